"""Tables, plots and verdicts from a run folder's saved results (what ``invscale report`` renders)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from invscale.results import read_results
from invscale.scoring.metrics import seed_summary
from invscale.study.plot import overview_figure, save, task_figure
from invscale.study.run import read_manifest, results_path
from invscale.study.verdict import Verdict, trend_verdict

SUMMARY_COLUMNS = ["task", "seeds", "model", "params", "non_embedding_params", "training_flops", "n", "accuracy",
                   "accuracy_low", "accuracy_high", "mean_loss", "loss_low", "loss_high"]
# --x-axis choice -> (summary column, axis label)
X_AXES = {"params": ("params", "parameters"),
          "non-embedding": ("non_embedding_params", "non-embedding parameters"),
          "flops": ("training_flops", "training FLOPs (6·N·D)")}


def report_tasks(datasets: list[dict]) -> list[tuple[str, list[dict]]]:
    """(task, its datasets) in manifest order: a dataset alone, or the datasets of one seed group
    (generated with several seeds) pooled under the group's name."""
    tasks: dict[str, list[dict]] = {}
    for dataset in datasets:
        tasks.setdefault(dataset.get("group", dataset["name"]), []).append(dataset)
    return list(tasks.items())


def build_report(run_dir: Path, x_axis: str = "params") -> tuple[list[dict], dict[str, Verdict]]:
    """Write summary.csv, verdicts.json, plots/<task>.png and plots/overview.png under ``run_dir``; return the summary
    rows and the verdict per task (datasets generated with several seeds pooled into one task, their
    intervals and verdict resampling seeds as well as examples). Only models whose results cover
    every row of a task count.
    ``x_axis`` (see :data:`X_AXES`) is what the plots put on their x axis; ValueError if a model
    lacks it (training FLOPs need the training tokens a family publishes)."""
    if x_axis not in X_AXES:
        raise ValueError(f"--x-axis {x_axis}: choose one of {', '.join(X_AXES)}")
    manifest = read_manifest(run_dir)
    if not manifest["datasets"]:
        raise ValueError(f"{run_dir}: no {run_dir / 'sweep.json'}; run invscale sweep first")
    summary, verdicts, plotted = [], {}, {}
    for task, members in report_tasks(manifest["datasets"]):
        task_rows, params, losses, names = [], [], [], []
        for model in manifest["models"]:
            per_member = []
            for dataset in members:
                path = results_path(run_dir, manifest, model, dataset) if "identity" in model else None
                per_member.append(sorted(read_results(path), key=lambda r: r["index"]) if path and path.exists() else [])
            if any(len(results) != dataset["rows"] for results, dataset in zip(per_member, members)) or not model.get("params"):
                continue
            tokens, non_embedding = model.get("training_tokens"), model.get("non_embedding_params")
            task_rows.append({"task": task, "seeds": ",".join(str(d["seed"]) for d in members if "seed" in d),
                              "model": model["name"], "params": model["params"], "non_embedding_params": non_embedding,
                              "training_flops": 6.0 * non_embedding * tokens if tokens and non_embedding else None,
                              **seed_summary(per_member)})
            params.append(model["params"])
            losses.append([r["loss"] for results in per_member for r in results])
            names.append(model["name"])
        verdict = (trend_verdict(params, np.array(losses), names=names, clusters=[d["rows"] for d in members])
                   if task_rows else Verdict("no results", "no model has results for this task"))
        verdicts[task] = verdict
        summary += task_rows
        if task_rows:
            column, label = X_AXES[x_axis]
            missing = [row["model"] for row in task_rows if not row[column]]
            if missing:
                raise ValueError(f"--x-axis {x_axis}: no {label} known for {', '.join(missing)}")
            save(task_figure(task, task_rows, verdict.kind, members[0], x=column, x_label=label),
                 run_dir / "plots" / f"{task}.png")
            plotted[task] = (task_rows, verdict.kind, members[0])
    if plotted:
        column, label = X_AXES[x_axis]
        save(overview_figure(plotted, x=column, x_label=label), run_dir / "plots" / "overview.png")
    with open(run_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summary)
    (run_dir / "verdicts.json").write_text(json.dumps({task: asdict(v) for task, v in verdicts.items()}, indent=2) + "\n")
    return summary, verdicts
