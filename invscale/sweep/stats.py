"""Bootstrap confidence intervals for per task × model summaries."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``samples``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def grouped_bootstrap_ci(groups: list[np.ndarray], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over every value of ``groups`` (one array per
    generator seed), resampling the groups and then the values within each: the interval covers
    the spread between seeds as well as between items (with one group, items alone)."""
    rng = np.random.default_rng(seed)
    count = len(groups)
    chosen = rng.integers(0, count, size=(BOOTSTRAP_SAMPLES, count)) if count > 1 else np.zeros((BOOTSTRAP_SAMPLES, 1), int)
    sizes = np.array([len(group) for group in groups], dtype=float)
    totals = np.zeros(BOOTSTRAP_SAMPLES)
    for slot in range(count):  # each slot draws its own items, even when two slots drew one group
        sums = np.stack([group[rng.integers(0, len(group), size=(BOOTSTRAP_SAMPLES, len(group)))].sum(axis=1)
                         for group in groups])  # [groups, samples]
        totals += sums[chosen[:, slot], np.arange(BOOTSTRAP_SAMPLES)]
    return percentile_interval(totals / sizes[chosen].sum(axis=1), level)
