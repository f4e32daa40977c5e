"""Densify's training windows: drawn class first, each holding the annotated voxel it was drawn for."""

import numpy as np
import pytest

from unet3d_keras.augmentation.params import AugmentationParams
from unet3d_keras.sparse_sampler import ClassFirstPatchSampler

UNANNOTATED = -1


@pytest.mark.parametrize("patch", [(8, 8, 8), (8, 12, 32), (32, 32, 32)])
def test_every_window_holds_the_voxel_it_was_drawn_for(patch):
    # Two annotated voxels only, far apart: a window that left its voxel out would hold no label at all.
    shape = (48, 41, 40)
    index_map = np.full(shape, UNANNOTATED, np.int32)
    index_map[20, 17, 19] = 1
    index_map[3, 38, 2] = 0  # near a corner: the clipped windows too
    images = np.zeros((1, *shape), np.float32)
    sampler = ClassFirstPatchSampler(images, index_map, 2, UNANNOTATED, patch, batch_size=8,
                                     augmentation=AugmentationParams(), seed=3, steps_per_epoch=8)
    drawn = np.zeros(2, int)
    for index in range(8):
        x, y = sampler[index]
        assert x.shape == (8, *patch, 1) and y.shape == (8, *patch, 2)
        labelled = y.reshape(8, -1, 2).sum(axis=1)  # annotated voxels of each class in each window
        assert np.all(labelled.sum(axis=1) >= 1)
        drawn += labelled.max(axis=0) > 0
    assert np.all(drawn > 0)  # both classes were drawn


def test_the_window_moves_by_up_to_a_quarter_of_its_side():
    shape = (64, 64, 64)
    index_map = np.full(shape, UNANNOTATED, np.int32)
    index_map[32, 32, 32] = 1
    index_map[5, 5, 5] = 0  # its windows never reach the marked voxel
    images = np.zeros((1, *shape), np.float32)
    images[0, 32, 32, 32] = 1.0  # marks the voxel: where it lands in the window tells the window's shift
    for patch in ((32, 32, 32), (8, 16, 12)):
        sampler = ClassFirstPatchSampler(images, index_map, 2, UNANNOTATED, patch, batch_size=16,
                                         augmentation=AugmentationParams(), seed=0, steps_per_epoch=8)
        offsets = np.concatenate([np.argwhere(sampler[i][0][..., 0] == 1.0)[:, 1:] for i in range(8)])
        shift = np.asarray(patch) // 2 - offsets
        # the shifts stay within a quarter of the side, and go both ways
        for axis, side in enumerate(patch):
            assert set(shift[:, axis]) <= set(range(-(side // 4), side // 4 + 1))
            assert shift[:, axis].min() < 0 < shift[:, axis].max()


def test_a_batch_depends_on_its_index_only_and_each_epoch_draws_anew():
    # densify makes the next batch while the model trains: a batch must not depend on when or in which order it is
    # asked for.
    shape = (20, 18, 16)
    index_map = np.full(shape, UNANNOTATED, np.int32)
    index_map[::3, ::4, ::5] = 0
    index_map[8:12, 6:10, 6:9] = 1
    images = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)

    def sampler():
        return ClassFirstPatchSampler(images, index_map, 2, UNANNOTATED, (8, 8, 8), batch_size=2,
                                      augmentation=AugmentationParams(), seed=5, steps_per_epoch=4)

    in_order = [sampler()[i] for i in range(12)]
    shuffled = sampler()
    for i in (11, 3, 7, 0, 3):
        assert all(np.array_equal(a, b) for a, b in zip(shuffled[i], in_order[i]))
    assert not np.array_equal(in_order[4][0], in_order[0][0])  # the second epoch's first batch is another draw
