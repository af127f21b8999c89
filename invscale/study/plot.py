"""Sweep figures: per task, accuracy and mean loss against model size with every model's point
labelled, 95% bootstrap bands and chance; the same through training, one line per model against
its checkpoints' steps; and one overview of every task's trend."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

BAND_LABEL = "95% bootstrap interval"
MAX_NAMED_TICKS = 8  # more model names than this do not fit under one axis


def model_label(name: str) -> str:
    """A model's short name for a plot: the last part of a hub id or path."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def _panels(rows: list[dict], chance: dict) -> list[tuple[str, str, str, str, float | None]]:
    panels = [("mean_loss", "loss_low", "loss_high", "mean loss (nats)", chance.get("chance_loss"))]
    if all("accuracy" in row for row in rows):
        panels.insert(0, ("accuracy", "accuracy_low", "accuracy_high", "accuracy", chance.get("chance_accuracy")))
    return panels


def _size_axis(axis, rows: list[dict], x: str, x_label: str) -> None:
    """Log x axis; each model's name as a tick label where the names fit (distinct sizes, few models)."""
    axis.set_xscale("log")
    axis.margins(x=0.12)  # room for the last point's label
    axis.set_xlabel(x_label)
    positions = [row[x] for row in rows]
    if len(set(positions)) == len(positions) <= MAX_NAMED_TICKS:
        axis.set_xticks(positions, [f"{model_label(row['model'])}\n{_short_number(row[x])}" for row in rows],
                        fontsize=7)
        axis.minorticks_off()


def _short_number(value: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _keep_inside(axis, values: list[float]) -> None:
    """Y limits holding every value (points, bands and chance) with a margin, never on the edge."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low, high = min(finite), max(finite)
    margin = (high - low) * 0.08 or abs(high) * 0.08 or 0.05
    axis.set_ylim(low - margin, high + margin)


def _draw_trend(axis, rows: list[dict], x: str, panel, legend: bool) -> list[float]:
    """Mean line, 95% band and chance line of one panel (labelled for a legend with ``legend``),
    y limits holding them all; returns the means."""
    value, low, high, _, chance_value = panel
    sizes, means = [row[x] for row in rows], [row[value] for row in rows]
    axis.plot(sizes, means, marker="o", label="mean" if legend else None)
    axis.fill_between(sizes, [row[low] for row in rows], [row[high] for row in rows], alpha=0.25,
                      label=BAND_LABEL if legend else None)
    if chance_value is not None:
        axis.axhline(chance_value, linestyle="--", color="grey", label="chance" if legend else None)
    _keep_inside(axis, [r[low] for r in rows] + [r[high] for r in rows] + means + [chance_value])
    return means


def task_figure(task: str, rows: list[dict], verdict: str, chance: dict, x: str = "params",
                x_label: str = "parameters"):
    """The figure of one task: accuracy (if every model has it) and mean loss against ``rows[i][x]``,
    one labelled point per model, the band and the chance line in the legend, n in the title."""
    rows = sorted(rows, key=lambda row: (row[x], row["model"]))
    panels = _panels(rows, chance)
    figure, axes = _panel_figure(panels)
    for axis, panel in zip(axes[0], panels):
        means = _draw_trend(axis, rows, x, panel, legend=True)
        for row, mean in zip(rows, means):
            axis.annotate(model_label(row["model"]), (row[x], mean), textcoords="offset points", xytext=(4, 5),
                          fontsize=7)
        _size_axis(axis, rows, x, x_label)
        _finish_panel(axis, panel[3])
    counts = sorted({row["n"] for row in rows})
    figure.suptitle(f"{task} (n = {', '.join(map(str, counts))} per model, {len(rows)} models): {verdict}")
    figure.tight_layout()
    return figure


def _panel_figure(panels: list):
    """(figure, axes) with one panel per entry of ``panels``, side by side."""
    return plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)


def _finish_panel(axis, y_label: str) -> None:
    """A panel's y label, grid and legend."""
    axis.set_ylabel(y_label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)


def training_figure(task: str, by_model: dict[str, list[dict]], verdicts: dict[str, str], chance: dict):
    """The figure of one task through training: accuracy (where every checkpoint has it) and mean
    loss against the training tokens (the step where a checkpoint's are not known), one line with
    its 95% band per model (``by_model``: its checkpoints' rows by step), each model's
    through-training verdict in the legend."""
    every = [row for rows in by_model.values() for row in rows]
    x, x_label = (("training_tokens", "training tokens") if all(row.get("training_tokens") for row in every)
                  else ("step", "training step"))
    return lines_figure(f"{task} through training", by_model, verdicts, chance, x, x_label)


def budget_figure(task: str, by_model: dict[str, list[dict]], verdicts: dict[str, str], chance: dict):
    """The figure of one task across reasoning budgets: accuracy and mean loss against the budget
    (``by_model``: each model's rows by budget), each model's verdict across budgets in the legend."""
    figure = lines_figure(f"{task} across reasoning budgets", by_model, verdicts, chance, "reasoning_tokens",
                          "reasoning budget (tokens; 0: the plain prompt)")
    positive = [row["reasoning_tokens"] for rows in by_model.values() for row in rows if row["reasoning_tokens"]]
    for axis in figure.axes:
        axis.set_xscale("symlog", linthresh=min(positive, default=1))  # 0 (the plain prompt) on the axis
    return figure


def lines_figure(title: str, by_model: dict[str, list[dict]], verdicts: dict[str, str], chance: dict, x: str,
                 x_label: str):
    """Accuracy (where every row has it) and mean loss against ``x``, one line with its 95% band
    per model (``by_model``: its rows in order), each model's verdict in the legend."""
    every = [row for rows in by_model.values() for row in rows]
    panels = _panels(every, chance)
    figure, axes = _panel_figure(panels)
    for axis, panel in zip(axes[0], panels):
        value, low, high, label, chance_value = panel
        for name, rows in by_model.items():
            steps = [row[x] for row in rows]
            axis.plot(steps, [row[value] for row in rows], marker="o", label=f"{model_label(name)}: {verdicts[name]}")
            axis.fill_between(steps, [row[low] for row in rows], [row[high] for row in rows], alpha=0.2)
        if chance_value is not None:
            axis.axhline(chance_value, linestyle="--", color="grey", label="chance")
        _keep_inside(axis, [r[low] for r in every] + [r[high] for r in every] + [chance_value])
        axis.set_xlabel(x_label)
        _finish_panel(axis, label)
    counts = sorted({row["n"] for row in every})
    figure.suptitle(f"{title} (n = {', '.join(map(str, counts))}; bands: {BAND_LABEL})")
    figure.tight_layout()
    return figure


def overview_figure(tasks: dict[str, tuple[list[dict], str, dict]], x: str = "params", x_label: str = "parameters"):
    """Small multiples, one panel per task ({task: (rows, verdict, chance)}): accuracy where every model
    has it, else mean loss, against size, with bands and chance."""
    count = len(tasks)
    columns = min(count, 3)
    lines = math.ceil(count / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for axis, (task, (rows, verdict, chance)) in zip(axes.flat, tasks.items()):
        rows = sorted(rows, key=lambda row: (row[x], row["model"]))
        panel = _panels(rows, chance)[0]
        _draw_trend(axis, rows, x, panel, legend=False)
        axis.set_xscale("log")
        axis.set_xlabel(x_label, fontsize=8)
        axis.set_ylabel(panel[3], fontsize=8)
        axis.set_title(f"{task}: {verdict}", fontsize=9)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[count:]:
        axis.set_visible(False)
    figure.suptitle(f"every task; bands: {BAND_LABEL}, dashed: chance", fontsize=9)
    figure.tight_layout()
    return figure


def save(figure, path: Path) -> None:
    """Write ``figure`` to ``path`` (PNG) and release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
