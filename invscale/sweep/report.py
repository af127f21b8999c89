"""Tables, plots and verdicts from a run folder's saved results (what ``invscale report`` renders)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from invscale.results import read_results
from invscale.sweep.plot import overview_figure, save, task_figure
from invscale.sweep.run import read_manifest, results_path
from invscale.sweep.stats import summarize_model
from invscale.sweep.verdict import Verdict, trend_verdict

SUMMARY_COLUMNS = ["task", "model", "params", "non_embedding_params", "training_flops", "n", "accuracy",
                   "accuracy_low", "accuracy_high", "mean_loss", "loss_low", "loss_high"]
# --x-axis choice -> (summary column, axis label)
X_AXES = {"params": ("params", "parameters"),
          "non-embedding": ("non_embedding_params", "non-embedding parameters"),
          "flops": ("training_flops", "training FLOPs (6·N·D)")}


def build_report(run_dir: Path, x_axis: str = "params") -> tuple[list[dict], dict[str, Verdict]]:
    """Write summary.csv, verdicts.json, plots/<task>.png and plots/overview.png under ``run_dir``; return the summary
    rows and the verdict per task. Only models whose results cover every row of a task count.
    ``x_axis`` (see :data:`X_AXES`) is what the plots put on their x axis; ValueError if a model
    lacks it (training FLOPs need the training tokens a family publishes)."""
    if x_axis not in X_AXES:
        raise ValueError(f"--x-axis {x_axis}: choose one of {', '.join(X_AXES)}")
    manifest = read_manifest(run_dir)
    if not manifest["datasets"]:
        raise ValueError(f"{run_dir}: no {run_dir / 'sweep.json'}; run invscale sweep first")
    summary, verdicts, plotted = [], {}, {}
    for dataset in manifest["datasets"]:
        task_rows, params, losses, names = [], [], [], []
        for model in manifest["models"]:
            path = results_path(run_dir, model["name"], manifest["dtype"], dataset)
            results = sorted(read_results(path), key=lambda r: r["index"]) if path.exists() else []
            if len(results) != dataset["rows"] or not model.get("params"):
                continue
            tokens, non_embedding = model.get("training_tokens"), model.get("non_embedding_params")
            task_rows.append({"task": dataset["name"], "model": model["name"], "params": model["params"],
                              "non_embedding_params": non_embedding,
                              "training_flops": 6.0 * non_embedding * tokens if tokens and non_embedding else None,
                              **summarize_model(results)})
            params.append(model["params"])
            losses.append([r["loss"] for r in results])
            names.append(model["name"])
        verdict = trend_verdict(params, np.array(losses), names=names) if task_rows else Verdict("no results", "no model has results for this task")
        verdicts[dataset["name"]] = verdict
        summary += task_rows
        if task_rows:
            column, label = X_AXES[x_axis]
            missing = [row["model"] for row in task_rows if not row[column]]
            if missing:
                raise ValueError(f"--x-axis {x_axis}: no {label} known for {', '.join(missing)}")
            save(task_figure(dataset["name"], task_rows, verdict.kind, dataset, x=column, x_label=label),
                 run_dir / "plots" / f"{dataset['name']}.png")
            plotted[dataset["name"]] = (task_rows, verdict.kind, dataset)
    if plotted:
        column, label = X_AXES[x_axis]
        save(overview_figure(plotted, x=column, x_label=label), run_dir / "plots" / "overview.png")
    with open(run_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summary)
    (run_dir / "verdicts.json").write_text(json.dumps({task: asdict(v) for task, v in verdicts.items()}, indent=2) + "\n")
    return summary, verdicts
