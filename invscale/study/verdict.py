"""The scaling verdict of one task: how mean loss moves with model size.

Verdicts speak of performance (lower loss is better), as the Inverse Scaling Prize does:
``inverse`` (loss rises with size), ``positive`` (loss falls), ``U-shaped`` (performance falls then
recovers: some middle model's loss is above both the smallest's and the largest's),
``inverted-U`` (performance rises then falls: a middle model's loss is below both ends), or
``flat`` (none of these is supported).

Every model scores the same examples, so the statistics come from a paired bootstrap over
examples. Two decisions are made, each on a 99% interval (on pure noise, four models × 300
examples, 8 of 300 simulated runs got a verdict other than flat):

1. with three or more models, the middle model with the highest (or lowest) mean loss: is its gap
   to *both* ends bounded away from zero? Then U-shaped (or inverted-U). Demanding both arms keeps
   a curve that falls and then levels off from being called inverted-U.
2. otherwise the least-squares slope of mean loss against log10(params): an interval above zero
   is ``inverse``, below zero ``positive``; an interval containing zero is ``flat``.

A quadratic fit in log10(params) (curvature and vertex) is reported alongside, as description.

Through training the same test runs on one model's checkpoints against their training steps
(linear): ``getting worse`` (loss rises as training goes on), ``getting better``, ``U-shaped``,
``inverted-U`` or ``flat``. Across reasoning budgets it runs on one model's results after chains of
thought of each budget, against log2(1 + budget) (budgets are usually doubled, and 0 is the plain
prompt): ``worse with more reasoning``, ``better with more reasoning``, ``U-shaped``,
``inverted-U`` or ``flat``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from invscale.bootstrap import percentile_interval, seed_item_means

LEVEL = 0.99


@dataclass
class Verdict:
    """A task's trend and the statistics behind it."""

    kind: str
    reason: str
    statistics: dict = field(default_factory=dict)


def _excludes_zero(interval: tuple[float, float]) -> bool:
    return interval[0] > 0 or interval[1] < 0


@dataclass(frozen=True)
class Axis:
    """What a trend is measured against: how values become the fitted x, the words of one unit of
    x, the names of a rising and a falling loss, and the statistics' names of x and of the slope."""

    transform: str  # "log10", "linear" (per 1,000) or "log2p1" (log2 of 1 + the value)
    unit: str
    rising: str
    falling: str
    what: str  # "size", "training step", "reasoning budget"
    x_name: str
    slope_name: str


SIZE = Axis("log10", "10x parameters", "inverse", "positive", "size", "log10_params", "slope_per_decade")
TRAINING = Axis("linear", "1,000 training steps", "getting worse", "getting better", "training step", "thousand_steps",
                "slope_per_thousand_steps")
BUDGET = Axis("log2p1", "doubling of 1 + the reasoning budget", "worse with more reasoning", "better with more reasoning",
              "reasoning budget", "log2_budget_plus_1", "slope_per_doubling")


def trend_verdict(params: list[int], losses: np.ndarray, seed: int = 0, names: list[str] | None = None,
                  clusters: list[int] | None = None, axis: Axis = SIZE) -> Verdict:
    """Verdict for per-example ``losses`` [models, examples] of models with ``params`` parameters
    (models in any order; every row scores the same examples); ``names`` name the models in the
    reason; ``clusters`` (sizes of consecutive example groups, one per generator seed) makes the
    bootstrap resample seeds as well as examples. With ``axis`` :data:`TRAINING`, ``params`` are the
    checkpoints' training steps of one model, the slope is per 1,000 steps and a rising loss is
    ``getting worse``, a falling one ``getting better``; with :data:`BUDGET` they are one model's
    reasoning budgets (see the module's docstring)."""
    order = np.argsort(params, kind="stable")
    names = [names[i] for i in order] if names is not None else [f"model {i + 1} of {len(order)}" for i in range(len(order))]
    values = np.asarray(params, dtype=float)[order]
    x = {"log10": np.log10, "linear": lambda v: v / 1000, "log2p1": lambda v: np.log2(v + 1)}[axis.transform](values)
    losses = np.asarray(losses, dtype=float)[order]
    n_models, n_examples = losses.shape
    if n_models < 2:
        return Verdict("insufficient data", "fewer than two models have results: no trend can be measured")
    if len(set(x.tolist())) < 2:
        return Verdict("insufficient data", f"every model with results has the same {axis.what}: no trend against "
                                            f"{axis.what} can be measured")
    sizes = clusters if clusters and sum(clusters) == n_examples else [n_examples]
    means = seed_item_means(losses, sizes, np.random.default_rng(seed))  # [samples, models], paired
    observed = losses.mean(axis=1)
    centred = x - x.mean()
    slope_samples = means @ centred / (centred @ centred)
    slope = float(observed @ centred / (centred @ centred))
    x_name = axis.x_name
    statistics = {x_name: x.tolist(), "mean_loss": observed.tolist(), axis.slope_name: slope,
                  "slope_interval": percentile_interval(slope_samples, LEVEL)}
    if len(set(x.tolist())) >= 3:  # a parabola needs three sizes (models of one size add no curvature)
        curvature, linear, _ = np.polyfit(centred, observed, 2)
        statistics["quadratic_curvature"] = float(curvature)
        if curvature != 0:
            statistics[f"quadratic_vertex_{x_name}"] = float(x.mean() - linear / (2 * curvature))
        for kind, pick, sign in (("U-shaped", np.argmax, 1), ("inverted-U", np.argmin, -1)):
            middle = 1 + int(pick(observed[1:-1]))
            gaps = [sign * (means[:, middle] - means[:, end]) for end in (0, n_models - 1)]
            intervals = [percentile_interval(gap, LEVEL) for gap in gaps]
            statistics[f"{kind}_middle_model"] = names[middle]
            statistics[f"{kind}_gap_intervals"] = intervals
            if all(low > 0 for low, _ in intervals):
                direction = "above" if sign > 0 else "below"
                return Verdict(kind, f"{names[middle]} has mean loss {direction} both the smallest model's "
                                     f"({names[0]}) and the largest's ({names[-1]}) ({LEVEL:.1%} bootstrap "
                                     f"intervals of both gaps exclude 0)", statistics)
    interval = statistics["slope_interval"]
    if _excludes_zero(interval):
        kind = axis.rising if slope > 0 else axis.falling
        return Verdict(kind, f"mean loss changes by {slope:+.4f} nats per {axis.unit} "
                             f"({LEVEL:.1%} bootstrap interval {interval[0]:+.4f} to {interval[1]:+.4f})", statistics)
    return Verdict("flat", f"no supported trend: slope {slope:+.4f} nats per {axis.unit}, {LEVEL:.1%} interval "
                           f"{interval[0]:+.4f} to {interval[1]:+.4f} contains 0, and no middle model stands "
                           f"out from both ends", statistics)
