"""Tables, plots and verdicts from a run folder's saved results (what ``invscale report`` renders)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from invscale.results import read_results
from invscale.scoring.metrics import seed_summary
from invscale.study.checkpoints import lineage, training_step
from invscale.study.plot import budget_figure, overview_figure, save, task_figure, training_figure
from invscale.study.run import read_manifest, results_path
from invscale.study.verdict import BUDGET, TRAINING, Verdict, trend_verdict

SUMMARY_COLUMNS = ["task", "seeds", "model", "step", "params", "non_embedding_params", "training_flops", "n", "accuracy",
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


def build_report(run_dir: Path, x_axis: str = "params") -> tuple[list[dict], dict[str, Verdict], dict[str, dict],
                                                                 dict[str, dict]]:
    """Write summary.csv, verdicts.json, plots/<task>.png and plots/overview.png under ``run_dir``; return the summary
    rows, the verdict per task (datasets generated with several seeds pooled into one task, their
    intervals and verdict resampling seeds as well as examples) and the through-training verdicts.
    Only models whose results cover every row of a task count. Checkpoints of one model at several
    training steps (see :mod:`invscale.study.checkpoints`) are a row each in the summary; the size
    trend takes each model's latest, and each model with two or more finished steps gets a
    through-training verdict per task ({task: {model: verdict}}, also training_verdicts.json) and
    plots/<task>-training.png, accuracy and loss against the training tokens (the step where they
    are not known), one line per model.
    Tasks swept at several reasoning budgets (chain of thought) get, per model with every budget
    finished, a verdict across budgets ({task: {model: verdict}}, also budget_verdicts.json; the
    fourth value returned) and plots/<task>-budget.png, accuracy and loss against the budget.
    ``x_axis`` (see :data:`X_AXES`) is what the plots put on their x axis; ValueError if a model
    lacks it (training FLOPs need the training tokens a family publishes)."""
    if x_axis not in X_AXES:
        raise ValueError(f"--x-axis {x_axis}: choose one of {', '.join(X_AXES)}")
    manifest = read_manifest(run_dir)
    if not manifest["datasets"]:
        raise ValueError(f"{run_dir}: no {run_dir / 'sweep.json'}; run invscale sweep first")
    summary, verdicts, training, plotted, pooled = [], {}, {}, {}, {}
    for task, members in report_tasks(manifest["datasets"]):
        task_rows, losses = [], []
        for model in manifest["models"]:
            per_member = finished_results(run_dir, manifest, model, members)
            if per_member is None or not model.get("params"):
                continue
            tokens, non_embedding = model.get("training_tokens"), model.get("non_embedding_params")
            task_rows.append({"task": task, "seeds": ",".join(str(d["seed"]) for d in members if "seed" in d),
                              "model": model["name"], "lineage": lineage(model["name"]),
                              "step": training_step(model["name"]), "training_tokens": tokens, "params": model["params"],
                              "non_embedding_params": non_embedding,
                              "training_flops": 6.0 * non_embedding * tokens if tokens and non_embedding else None,
                              **seed_summary(per_member)})
            losses.append(row_losses(per_member))
            if None not in losses[-1]:
                pooled[task, model["name"]] = (task_rows[-1], losses[-1])
        clusters = [d["rows"] // (3 if d.get("task_type") == "numeric" else 1) for d in members]
        usable = [number for number, values in enumerate(losses) if None not in values]  # every loss defined
        latest = [number for number in _latest_of_each_lineage(task_rows) if number in usable]
        sized = [task_rows[i] for i in latest]
        verdict = (trend_verdict([row["params"] for row in sized], np.array([losses[i] for i in latest]),
                                 names=[row["model"] for row in sized], clusters=clusters)
                   if sized else Verdict("no results", "no model has results for this task"))
        verdicts[task] = verdict
        summary += task_rows
        if sized:
            column, label = X_AXES[x_axis]
            missing = [row["model"] for row in sized if not row[column]]
            if missing:
                raise ValueError(f"--x-axis {x_axis}: no {label} known for {', '.join(missing)}")
            save(task_figure(task, sized, verdict.kind, members[0], x=column, x_label=label),
                 run_dir / "plots" / f"{task}.png")
            plotted[task] = (sized, verdict.kind, members[0])
        through = _through_training([task_rows[i] for i in usable], [losses[i] for i in usable], clusters)
        if through:
            training[task] = {name: verdict for name, (verdict, _) in through.items()}
            save(training_figure(task, {name: rows for name, (_, rows) in through.items()},
                                 {name: verdict.kind for name, (verdict, _) in through.items()}, members[0]),
                 run_dir / "plots" / f"{task}-training.png")
    budgets = _across_budgets(run_dir, manifest, pooled)
    if plotted:
        column, label = X_AXES[x_axis]
        save(overview_figure(plotted, x=column, x_label=label), run_dir / "plots" / "overview.png")
    with open(run_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summary)
    (run_dir / "verdicts.json").write_text(json.dumps({task: asdict(v) for task, v in verdicts.items()}, indent=2) + "\n")
    if training:
        (run_dir / "training_verdicts.json").write_text(json.dumps(
            {task: {name: asdict(v) for name, v in by_model.items()} for task, by_model in training.items()}, indent=2)
            + "\n")
    return summary, verdicts, training, budgets


def _across_budgets(run_dir: Path, manifest: dict, pooled: dict) -> dict[str, dict]:
    """{task: {model: verdict across its reasoning budgets}} for every task swept at two or more
    budgets, each model that finished all of them; writes their plots and budget_verdicts.json.
    ``pooled``: {(report task, model): (its summary row, its per-row losses)}."""
    axes: dict[str, dict[int, str]] = {}  # the task varied -> {budget: the report task of that budget}
    for dataset in manifest["datasets"]:
        if "reasoning_tokens" in dataset:
            axes.setdefault(dataset["budget_of"], {})[dataset["reasoning_tokens"]] = dataset.get("group", dataset["name"])
    found = {}
    for base, by_budget in axes.items():
        if len(by_budget) < 2:
            continue
        budgets = sorted(by_budget)
        members = [d for d in manifest["datasets"] if d.get("group", d["name"]) == by_budget[budgets[0]]]
        clusters = [d["rows"] for d in members]
        verdicts, rows = {}, {}
        for model in manifest["models"]:
            cells = [pooled.get((by_budget[budget], model["name"])) for budget in budgets]
            if any(cell is None for cell in cells):
                continue
            verdicts[model["name"]] = trend_verdict(budgets, np.array([losses for _, losses in cells]),
                                                    names=[f"{budget} tokens" for budget in budgets],
                                                    clusters=clusters, axis=BUDGET)
            rows[model["name"]] = [{**row, "reasoning_tokens": budget} for budget, (row, _) in zip(budgets, cells)]
        if verdicts:
            found[base] = verdicts
            save(budget_figure(base, rows, {name: verdict.kind for name, verdict in verdicts.items()}, members[0]),
                 run_dir / "plots" / f"{base}-budget.png")
    if found:
        (run_dir / "budget_verdicts.json").write_text(json.dumps(
            {task: {name: asdict(v) for name, v in by_model.items()} for task, by_model in found.items()}, indent=2)
            + "\n")
    return found


def row_losses(per_member: list[list[dict]]) -> list[float | None]:
    """A model's losses over a task's rows, in order, as the verdicts pair them: each row's, or for
    numeric rows each triple's once (None where a triple has no loss)."""
    return [r["loss"] for results in per_member for r in results if "triple" not in r or r["index"] % 3 == 0]


def finished_results(run_dir: Path, manifest: dict, model: dict, members: list[dict]) -> list[list[dict]] | None:
    """``model``'s results of each dataset of a task (manifest entries), by row index, or None unless
    it has one for every row of every dataset."""
    if "identity" not in model:
        return None
    per_member = []
    for dataset in members:
        path = results_path(run_dir, manifest, model, dataset)
        results = sorted(read_results(path), key=lambda r: r["index"]) if path.exists() else []
        if len(results) != dataset["rows"]:
            return None
        per_member.append(results)
    return per_member


def _latest_of_each_lineage(rows: list[dict]) -> list[int]:
    """The indexes of the rows a size trend takes: each model's latest checkpoint (rows without a
    step are models of their own)."""
    latest: dict[str, int] = {}
    for number, row in enumerate(rows):
        kept = latest.get(row["lineage"])
        if kept is None or (row["step"] or -1) > (rows[kept]["step"] or -1):
            latest[row["lineage"]] = number
    return sorted(latest.values())


def _through_training(rows: list[dict], losses: list[list[float]], clusters: list[int]) -> dict:
    """{model: (its through-training verdict, its rows by step)} for each model with finished
    checkpoints at two or more steps."""
    by_lineage: dict[str, list[int]] = {}
    for number, row in enumerate(rows):
        if row["step"] is not None:
            by_lineage.setdefault(row["lineage"], []).append(number)
    through = {}
    for name, numbers in by_lineage.items():
        if len({rows[i]["step"] for i in numbers}) < 2:
            continue
        numbers = sorted(numbers, key=lambda i: rows[i]["step"])
        verdict = trend_verdict([rows[i]["step"] for i in numbers], np.array([losses[i] for i in numbers]),
                                names=[rows[i]["model"] for i in numbers], clusters=clusters, axis=TRAINING)
        through[name] = (verdict, [rows[i] for i in numbers])
    return through
