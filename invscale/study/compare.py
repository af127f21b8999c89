"""Model against model on the same examples: paired differences, McNemar's exact test, flips.

For every task both models of a run folder have finished, on the same rows: the difference in
accuracy and in mean loss (second model minus first) with a paired bootstrap interval (the
seeds-then-items bootstrap of :mod:`invscale.bootstrap`, the same draws for both models), McNemar's
exact test on correctness (a two-sided binomial test on the examples only one model gets right),
and how many examples flip each way. The tasks' p-values are corrected for testing several tasks
by Holm's step-down method, which holds the family-wise error rate without assuming independence.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path
from urllib.parse import quote

import numpy as np

from invscale.bootstrap import percentile_interval, seed_item_means
from invscale.study.report import finished_results, report_tasks
from invscale.study.run import read_manifest

LEVEL = 0.95
CORRECTION = "Holm"


@dataclass
class TaskComparison:
    """One task's paired comparison of ``second`` against ``first`` (differences are second − first)."""

    task: str
    n: int
    accuracy_first: float | None
    accuracy_second: float | None
    accuracy_difference: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    loss_difference: float
    loss_low: float
    loss_high: float
    only_first_correct: int | None
    only_second_correct: int | None
    mcnemar_p: float | None
    mcnemar_p_holm: float | None = None


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the binomial probability, at one half, of a split of the
    discordant examples at least as uneven as the one seen."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(comb(discordant, k) for k in range(min(only_first, only_second) + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _model(manifest: dict, name: str) -> dict:
    """The manifest entry of the model called ``name``, or of the one model whose name contains it."""
    models = manifest["models"]
    exact = [model for model in models if model["name"] == name]
    near = exact or [model for model in models if name in model["name"]]
    if len(near) != 1:
        known = ", ".join(model["name"] for model in models) or "none"
        raise ValueError(f"{name!r}: {'no' if not near else 'more than one'} model of this run is called so; "
                         f"its models: {known}")
    return near[0]


def compare_models(run_dir: Path, first: str, second: str, seed: int = 0) -> tuple[dict, dict, list[TaskComparison]]:
    """(first model's entry, second's, one comparison per task both have finished) for the run
    folder ``run_dir``; models are named as in its manifest (or by a part of the name only one has)."""
    manifest = read_manifest(run_dir)
    if not manifest["models"]:
        raise ValueError(f"{run_dir}: no {run_dir / 'sweep.json'}; run invscale sweep first")
    a, b = _model(manifest, first), _model(manifest, second)
    if a is b:
        raise ValueError(f"{first!r} and {second!r} name the same model, {a['name']}")
    comparisons = []
    for task, members in report_tasks(manifest["datasets"]):
        results_a = finished_results(run_dir, manifest, a, members)
        results_b = finished_results(run_dir, manifest, b, members)
        if results_a is None or results_b is None:
            continue
        pairs = [[(x, y) for x, y in zip(part_a, part_b) if x["index"] == y["index"]
                  and "skipped" not in x and "skipped" not in y] for part_a, part_b in zip(results_a, results_b)]
        pairs = [part for part in pairs if part]
        if not pairs:
            continue
        comparisons.append(_compare(task, pairs, seed))
    adjusted = holm([c.mcnemar_p for c in comparisons if c.mcnemar_p is not None])
    for comparison, value in zip([c for c in comparisons if c.mcnemar_p is not None], adjusted):
        comparison.mcnemar_p_holm = value
    return a, b, comparisons


def _compare(task: str, pairs: list[list[tuple[dict, dict]]], seed: int) -> TaskComparison:
    """The paired comparison of one task, ``pairs`` the (first, second) results of each seed's rows."""
    sizes = [len(part) for part in pairs]
    flat = [pair for part in pairs for pair in part]
    rng = np.random.default_rng(seed)
    losses = np.array([[x["loss"] for x, _ in flat], [y["loss"] for _, y in flat]])
    loss_means = seed_item_means(losses, sizes, rng)
    loss_low, loss_high = percentile_interval(loss_means[:, 1] - loss_means[:, 0], LEVEL)
    comparison = dict(task=task, n=len(flat), loss_difference=float(losses[1].mean() - losses[0].mean()),
                      loss_low=loss_low, loss_high=loss_high)
    if "correct" not in flat[0][0]:
        return TaskComparison(**comparison, accuracy_first=None, accuracy_second=None, accuracy_difference=None,
                              accuracy_low=None, accuracy_high=None, only_first_correct=None,
                              only_second_correct=None, mcnemar_p=None)
    correct = np.array([[bool(x["correct"]) for x, _ in flat], [bool(y["correct"]) for _, y in flat]], dtype=float)
    accuracy_means = seed_item_means(correct, sizes, rng)
    accuracy_low, accuracy_high = percentile_interval(accuracy_means[:, 1] - accuracy_means[:, 0], LEVEL)
    only_first = int(((correct[0] == 1) & (correct[1] == 0)).sum())
    only_second = int(((correct[0] == 0) & (correct[1] == 1)).sum())
    return TaskComparison(**comparison, accuracy_first=float(correct[0].mean()), accuracy_second=float(correct[1].mean()),
                          accuracy_difference=float(correct[1].mean() - correct[0].mean()),
                          accuracy_low=accuracy_low, accuracy_high=accuracy_high, only_first_correct=only_first,
                          only_second_correct=only_second, mcnemar_p=mcnemar_exact(only_first, only_second))


def write_comparison(run_dir: Path, first: dict, second: dict, comparisons: list[TaskComparison]) -> Path:
    """The comparisons as ``run_dir/compare/<first>--<second>.csv`` (names escaped); its path."""
    path = run_dir / "compare" / f"{quote(first['name'], safe='')}--{quote(second['name'], safe='')}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(TaskComparison.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(comparison) for comparison in comparisons)
    return path
