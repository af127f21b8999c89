"""The datasets of a sweep: prize-format files as given, and generator names expanded into one
dataset per shot count and seed, written into the run folder."""

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


def sweep_datasets(items: list[str], run_dir: Path, n: int, seeds: list[int],
                   shots: list[int | None]) -> tuple[dict[str, tuple[str, Dataset]], dict[str, dict]]:
    """({name: (path, dataset)}, {name: {"group": …, "seed": …}}) for ``items``: an existing file is
    read (named by :func:`task_name`); a generator's name gives ``n`` rows per shot count and seed,
    to be saved (by the sweep, once the run folder accepts them) as ``run_dir/data/NAME.jsonl``
    (NAME: the task, ``-Kshot`` when shots are given, ``-seedS`` with several seeds); datasets that
    differ only by seed share a group, which the report pools. ValueError (one line) for a name
    that is neither, or two items of one name."""
    from invscale.generators import REGISTRY, generate, variant_name

    datasets: dict[str, tuple[str, Dataset]] = {}
    groups: dict[str, dict] = {}

    def add(name: str, path: str, dataset: Dataset) -> None:
        if name in datasets:
            raise ValueError(f"{path}: another dataset is also named {name!r}; task names come from file names")
        datasets[name] = (path, dataset)

    for item in items:
        if Path(item).exists() or item not in REGISTRY:
            add(task_name(item), str(Path(item).resolve()), read_dataset(item))
            continue
        for shot_count in shots:
            group = variant_name(item, shot_count)
            for seed in seeds:
                name = variant_name(item, shot_count, seed if len(seeds) > 1 else None)
                dataset = with_content_hash(generate(item, n, seed, shot_count)[0])
                add(name, str((run_dir / "data" / f"{name}.jsonl").resolve()), dataset)
                if len(seeds) > 1:
                    groups[name] = {"group": group, "seed": seed}
    return datasets, groups
