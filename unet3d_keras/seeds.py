"""Seeds and the independent random streams derived from one seed.

A run has one integer seed. Every random choice of the data pipeline draws from a
``numpy.random.Generator`` derived from it, each kind of choice from its own stream, so that
changing one (e.g. the augmentation) leaves the others (the split, the epoch plans) unchanged.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "ITEM_STREAM",
    "SPLIT_STREAM",
    "TRAINING_STREAM",
    "VALIDATION_STREAM",
    "resolve_seed",
    "plan_rng",
    "item_rng",
    "split_rng",
    "stream_rng",
]

# Stream tags keep the split and per-item augmentation streams apart from the per-epoch plan
# stream ``default_rng([seed, epoch])`` (SeedSequence treats trailing zeros as absent, so
# ``[seed, 0]``, ``[seed]`` and ``seed`` are the same stream).
ITEM_STREAM = 1
SPLIT_STREAM = 2
TRAINING_STREAM = 3
VALIDATION_STREAM = 4


def resolve_seed(seed: int | None) -> int:
    """``seed``, or fresh entropy (logged, so that the run can be repeated) when it is None.

    Raises:
        ValueError: a negative seed.
    """
    if seed is not None:
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer; received {seed}")
        return seed
    seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    logger.info("No seed given; using seed=%d (pass it to repeat this run)", seed)
    return seed


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of the stream tagged ``key`` (a ``*_STREAM`` tag, then any indices)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


def plan_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that plans epoch ``epoch``: ``default_rng([seed, epoch])``."""
    return np.random.default_rng([int(seed), int(epoch)])


def item_rng(seed: int, epoch: int, item: int) -> np.random.Generator:
    """The generator that augments item ``item`` (position in the epoch) of epoch ``epoch``."""
    return stream_rng(seed, ITEM_STREAM, epoch, item)


def split_rng(seed: int) -> np.random.Generator:
    """The generator that draws the training/validation split."""
    return stream_rng(seed, SPLIT_STREAM)
