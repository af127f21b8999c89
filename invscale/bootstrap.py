"""The one bootstrap invscale's intervals and verdicts use: seeds, then items within each seed.

Generated tasks are often scored for several generator seeds; the spread between seeds is part of
the uncertainty, so a resample first draws seeds with replacement and then, within each drawn
seed, as many items as it holds, with replacement (with one seed, items alone). Every row of a
[rows, items] array (e.g. one row per model) is resampled with the same draws, so differences
between rows are paired.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``samples``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def seed_item_means(values: np.ndarray, sizes: list[int], rng: np.random.Generator,
                    samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    """[samples, rows] bootstrap means of ``values`` [rows, items], whose items fall in consecutive
    groups of ``sizes`` (one per seed): each sample draws ``len(sizes)`` groups with replacement,
    then within each drawn group as many items as it has, the same draws for every row."""
    values = np.asarray(values, dtype=float)
    sizes_array = np.asarray(sizes)
    starts = np.concatenate([[0], np.cumsum(sizes_array)[:-1]])
    count = len(sizes)
    chosen = rng.integers(0, count, size=(samples, count)) if count > 1 else np.zeros((samples, 1), int)
    totals = np.zeros((samples, values.shape[0]))
    for slot in range(count):  # each slot draws its own items, even when two slots drew one group
        sums = np.stack([_resampled_sums(values[:, start:start + size], rng, samples)
                         for start, size in zip(starts, sizes)])  # [groups, rows, samples]
        totals += sums[chosen[:, slot], :, np.arange(samples)]
    return totals / sizes_array[chosen].sum(axis=1)[:, None]


def _resampled_sums(values: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    """[rows, samples] sums of ``values`` [rows, items] over items drawn with replacement, the
    samples drawn in blocks of at most a few million picks (the same numbers as one draw)."""
    rows, size = values.shape
    block = max(1, (1 << 22) // max(size * rows, 1))
    sums = np.empty((rows, samples))
    for first in range(0, samples, block):
        picks = rng.integers(0, size, size=(min(block, samples - first), size))
        sums[:, first:first + len(picks)] = values[:, picks].sum(axis=2)
    return sums


def grouped_bootstrap_ci(groups: list[np.ndarray], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over every value of ``groups`` (one array per
    generator seed), resampled by :func:`seed_item_means`."""
    values = np.concatenate([np.asarray(group, dtype=float) for group in groups])[None, :]
    means = seed_item_means(values, [len(group) for group in groups], np.random.default_rng(seed))
    return percentile_interval(means[:, 0], level)
