"""Run a sweep: every dataset on every model, one model in memory at a time, resumable.

A run folder holds ``sweep.json`` (the datasets with their content hashes and chance levels, the
models with their sizes and what happened to each) and ``results/<model>--<dtype>/<dataset>-<hash>
.results.jsonl`` per pair, so finished pairs are keyed by dataset content, model and dtype and
never redone. A model that fails to load, does not fit, or runs out of memory, and a dataset a
model cannot score (a row longer than its context), are recorded with the reason and the sweep
goes on.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Callable

import torch

from invscale.data import DataError, Dataset
from invscale.models import ModelLoadError, fingerprint, load_for_scoring, resolve_device, resolve_dtype
from invscale.results import ResultsError, ResultsStore, open_results, read_results
from invscale.scoring.chat import apply_chat_template
from invscale.scoring.distributed import Group, results_store
from invscale.scoring.metrics import chance_levels
from invscale.scoring.scorer import ScoringJob
from invscale.sweep.family import Member, fit_problem, non_embedding_params

MANIFEST = "sweep.json"


def read_manifest(run_dir: Path) -> dict:
    """The run folder's manifest, or an empty one."""
    path = run_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"datasets": [], "models": []}


def write_manifest(run_dir: Path, manifest: dict) -> None:
    """Replace the manifest atomically (a crash never leaves half a file)."""
    staging = run_dir / (MANIFEST + ".tmp")
    staging.write_text(json.dumps(manifest, indent=2) + "\n")
    staging.replace(run_dir / MANIFEST)


def results_path(run_dir: Path, model: str, dtype: str, dataset: dict) -> Path:
    """Where one (model, dtype, dataset content) pair keeps its per-example results."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")
    return run_dir / "results" / f"{slug}--{dtype}" / f"{dataset['name']}-{dataset['sha256'][:12]}.results.jsonl"


def _scored(path: Path) -> int:
    return len({int(r["index"]) for r in read_results(path)}) if path.exists() else 0


def run_sweep(run_dir: Path, datasets: dict[str, tuple[str, Dataset]], models: list[tuple[str, Member | None]],
              dtype: str, device: str, kernels: str, max_tokens_per_pack: int | None,
              score: Callable[[ScoringJob, ResultsStore], list[dict]], log: Callable[[str], None],
              offload: str = "none", memory_budget: int | None = None, group: Group = Group(),
              chat_template: bool = False, seed_groups: dict[str, dict] | None = None) -> dict:
    """Score ``datasets`` ({name: (path, dataset)}) on ``models`` ([(name, its family entry or None)]).

    ``score(job, results_file)`` runs one job, appending to the file, and returns the new results.
    With ``offload`` other than ``none`` a model too big for the device is streamed layer by layer
    (see :func:`invscale.models.load_for_scoring`) instead of skipped.
    ``seed_groups`` ({name: {"group", "seed"}}) marks generated datasets that differ only by seed,
    which the report pools. With ``chat_template`` each model scores the prompts in its own chat template (a model without
    one fails with that reason). Under torchrun (``group`` of several processes) every process loads each model and scores its
    share of the packs; the main one alone logs, keeps the manifest and writes results.
    Returns the manifest, which is also saved after every model."""
    def save(manifest: dict) -> None:
        if group.is_main:
            write_manifest(run_dir, manifest)

    if not group.is_main:
        def log(line: str) -> None:
            pass

    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(run_dir)
    manifest.update(dtype=dtype, device=device, chat_template=chat_template)
    manifest["datasets"] = [{"name": name, "path": path, "sha256": dataset.content_sha256, "rows": len(dataset.rows),
                             "task_type": dataset.task_type.value, **chance_levels(dataset),
                             **(seed_groups or {}).get(name, {})}
                            for name, (path, dataset) in datasets.items()]
    previous = {entry["name"]: entry for entry in manifest["models"]}
    manifest["models"] = []
    for name, member in models:
        known = previous.get(name, {})
        entry = {"name": name, "status": "pending",
                 **{key: known.get(key) for key in ("params", "non_embedding_params", "training_tokens")},
                 **({"params": member.params, "non_embedding_params": member.non_embedding_params,
                     "training_tokens": member.training_tokens} if member else {})}
        known_params = entry["params"] if member else None
        manifest["models"].append(entry)
        pending = group.broadcast([dataset_entry for dataset_entry in manifest["datasets"]
                                   if _scored(results_path(run_dir, name, dtype, dataset_entry)) < dataset_entry["rows"]]
                                  if group.is_main else None)
        if not pending:
            entry["status"] = "done"
            log(f"{name}: already scored on every dataset")
            save(manifest)
            continue
        streaming = offload in ("disk", "cpu") or (offload == "auto" and memory_budget is not None)
        problem = (fit_problem(known_params, resolve_dtype(dtype), resolve_device(device))
                   if known_params and not streaming else None)
        if problem:
            entry.update(status="skipped", reason=problem)
            log(f"{name}: skipped: {problem}")
            save(manifest)
            continue
        try:
            loaded = load_for_scoring(name, dtype=dtype, device=device, offload=offload, memory_budget=memory_budget)
            identity = fingerprint(name)
        except ModelLoadError as exc:
            entry.update(status="failed", reason=str(exc))
            log(f"{name}: failed to load: {exc}")
            save(manifest)
            continue
        entry["params"] = sum(p.numel() for p in loaded.model.parameters())
        entry["non_embedding_params"] = non_embedding_params(loaded.model)
        entry["failures"] = {}
        save(manifest)  # sizes known even if the run is killed while scoring
        try:
            for dataset_entry in pending:
                dataset = datasets[dataset_entry["name"]][1]
                try:
                    path = results_path(run_dir, name, dtype, dataset_entry)
                    with results_store(group, lambda: open_results(path, dataset, identity, dtype,
                                                                   chat_template=chat_template), path) as store:
                        scored = apply_chat_template(dataset, loaded.tokenizer) if chat_template else dataset
                        job = ScoringJob(loaded.model, loaded.tokenizer, scored, max_tokens_per_pack=max_tokens_per_pack,
                                         skip_indexes=store.done_indexes(), kernels=kernels, streamed=loaded.streamed,
                                         memory_budget=memory_budget, group=group)
                        store.start()
                        log(f"{name}: {dataset_entry['name']} ({job.stats.items} items)")
                        store.finalize(store.existing + score(job, store))
                except (DataError, ResultsError, ValueError) as exc:  # this pair only; the sweep goes on
                    entry["failures"][dataset_entry["name"]] = str(exc)
                    log(f"{name}: {dataset_entry['name']}: failed: {exc}")
            entry["status"] = "failed" if entry["failures"] else "done"
            if entry["failures"]:
                entry["reason"] = "; ".join(f"{task}: {reason}" for task, reason in entry["failures"].items())
        except torch.cuda.OutOfMemoryError:
            entry.update(status="failed", reason="out of GPU memory; lower --max-tokens-per-pack")
            log(f"{name}: failed: out of GPU memory")
        finally:
            del loaded
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            save(manifest)
    return manifest
