"""The datasets of a sweep: prize-format files as given, and generator names expanded into one
dataset per shot count and seed, written into the run folder; with reasoning budgets, one variant
of each per budget."""

from __future__ import annotations

from pathlib import Path

from invscale.data import Dataset, read_dataset, with_content_hash


def task_name(path: str) -> str:
    """The task a data file holds: its file name up to the first dot after any leading dots
    (``.hidden.csv`` is ``hidden``); ValueError for a name that gives none."""
    name = Path(path).name.lstrip(".").split(".")[0]
    if not name:
        raise ValueError(f"{path}: cannot name a task after this file; rename it (e.g. task.jsonl)")
    return name


def sweep_datasets(items: list[str], run_dir: Path, n: int, seeds: list[int], shots: list[int | None],
                   budgets: list[int] | None = None,
                   cues: tuple[str, str] | None = None) -> tuple[dict[str, tuple[str, Dataset]], dict[str, dict]]:
    """({name: (path, dataset)}, {name: {"group": …, "seed": …, "reasoning_tokens": …, "budget_of": …}})
    for ``items``: an existing file is read (named by :func:`task_name`); a generator's name gives
    ``n`` rows per shot count and seed, to be saved (by the sweep, once the run folder accepts them)
    as ``run_dir/data/NAME.jsonl`` (NAME: the task, ``-Kshot`` when shots are given, ``-seedS`` with
    several seeds); datasets that differ only by seed share a group, which the report pools. With
    ``budgets`` (chain-of-thought token budgets) each becomes one variant per budget (``-cotN``),
    ``budget_of`` naming the task they vary, generated worked examples showing their chains with
    ``cues`` (reasoning cue, answer cue) where the budget is above 0. ValueError (one line) for a
    name that is neither, or two items of one name."""
    from invscale.generators import REGISTRY, generate, variant_name

    datasets: dict[str, tuple[str, Dataset]] = {}
    groups: dict[str, dict] = {}

    def add(name: str, path: str, dataset: Dataset) -> None:
        if name in datasets:
            raise ValueError(f"{path}: another dataset is also named {name!r}; task names come from file names")
        datasets[name] = (path, dataset)

    for item in items:
        if Path(item).exists() or item not in REGISTRY:
            task, path, dataset = task_name(item), str(Path(item).resolve()), read_dataset(item)
            for budget in budgets or [None]:
                add(variant_name(task, reasoning_tokens=budget), path, dataset)
                if budget is not None:
                    groups[variant_name(task, reasoning_tokens=budget)] = {"reasoning_tokens": budget,
                                                                           "budget_of": task}
            continue
        for shot_count in shots:
            for budget in budgets or [None]:
                group = variant_name(item, shot_count, reasoning_tokens=budget)
                for seed in seeds:
                    name = variant_name(item, shot_count, seed if len(seeds) > 1 else None, budget)
                    dataset = with_content_hash(generate(item, n, seed, shot_count,
                                                         cues=cues if budget else None)[0])
                    add(name, str((run_dir / "data" / f"{name}.jsonl").resolve()), dataset)
                    extras = {"group": group, "seed": seed} if len(seeds) > 1 else {}
                    if budget is not None:
                        extras.update(reasoning_tokens=budget, budget_of=variant_name(item, shot_count))
                    if extras:
                        groups[name] = extras
    return datasets, groups
