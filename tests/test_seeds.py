"""The random streams derived from one seed are distinct."""

import numpy as np

from unet3d_keras import seeds


def test_each_stream_tag_draws_its_own_numbers():
    tags = [seeds.ITEM_STREAM, seeds.SPLIT_STREAM, seeds.TRAINING_STREAM, seeds.VALIDATION_STREAM]
    assert len(set(tags)) == len(tags)
    seed = 42
    # The plain streams that other draws use: the epoch plans default_rng([seed, epoch]) and densify's
    # batches default_rng([seed, epoch, batch]); [seed, 0, 0] is the same stream as seed itself (which
    # densify's held-back tiles also draw from: densify.fit_sparse says why that stays).
    plain = [np.random.default_rng([seed, epoch, batch]).integers(1 << 62, size=4).tolist()
             for epoch in range(3) for batch in range(3)]
    assert plain[0] == np.random.default_rng(seed).integers(1 << 62, size=4).tolist()
    tagged = [seeds.stream_rng(seed, tag).integers(1 << 62, size=4).tolist() for tag in tags]
    drawn = plain + tagged
    assert len({tuple(numbers) for numbers in drawn}) == len(drawn)
    assert seeds.split_rng(seed).integers(1 << 62, size=4).tolist() == tagged[1]
    assert seeds.item_rng(seed, 0, 0).integers(1 << 62, size=4).tolist() != plain[0]
