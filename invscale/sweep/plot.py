"""One figure per task: accuracy and mean loss against model size (parameters, or training FLOPs),
with 95% bands."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_task(task: str, rows: list[dict], verdict: str, chance: dict, path: Path, x: str = "params",
              x_label: str = "parameters") -> None:
    """Write ``path`` (PNG): accuracy (if any) and loss vs ``rows[i][x]``, log x, bootstrap bands, chance."""
    rows = sorted(rows, key=lambda row: row[x])
    params = [row[x] for row in rows]
    panels = [("mean_loss", "loss_low", "loss_high", "mean loss (nats)", chance.get("chance_loss"))]
    if all("accuracy" in row for row in rows):
        panels.insert(0, ("accuracy", "accuracy_low", "accuracy_high", "accuracy", chance.get("chance_accuracy")))
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, (value, low, high, label, chance_value) in zip(axes[0], panels):
        axis.plot(params, [row[value] for row in rows], marker="o")
        axis.fill_between(params, [row[low] for row in rows], [row[high] for row in rows], alpha=0.25)
        if chance_value is not None:
            axis.axhline(chance_value, linestyle="--", color="grey", label="chance")
            axis.legend()
        axis.set_xscale("log")
        axis.set_xlabel(x_label)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{task}: {verdict}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
