"""Run a sweep: every dataset on every model, one model in memory at a time, resumable.

A run folder holds ``sweep.json`` (the datasets with their content hashes and chance levels, the
models with their sizes, content fingerprints and what happened to each) and
``results/<model>--<fingerprint>--<settings>/<dataset>-<hash>.results.jsonl`` per pair: the model's
name escaped so that no two names share a folder, the fingerprint of its weights and tokenizer, and
every setting that changes results (dtype, the chat template). A pair is finished when its store's
provenance is this run's and it holds every row, and is then never redone. A model that fails to
load, does not fit, or runs out of memory, and a dataset a model cannot score (a row longer than its
context), are recorded with the reason and the sweep goes on.

A run folder is one study: a later sweep into it keeps the models and datasets it does not name
(they stay in the report), refuses a dataset of a known name whose rows differ, and refuses other
settings (dtype, chat template) than the folder's.
"""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path
from urllib.parse import quote
from typing import Callable

import torch

from invscale.chain_of_thought import ChainOfThought
from invscale.data import DataError, Dataset, write_dataset
from invscale.jobs import Writing, make_job
from invscale.models import (ModelLoadError, NotLocal, fingerprint, load_for_scoring, load_tokenizer, resolve_device,
                             resolve_dtype)
from invscale.results import ResultsError, ResultsStore, is_complete, open_results, provenance, results_store
from invscale.scoring.chat import NoChatTemplate, apply_chat_template, require_chat_template
from invscale.scoring.distributed import Group
from invscale.scoring.metrics import chance_levels
from invscale.scoring.scorer import ScoringJob
from invscale.study.family import Member, fit_problem, non_embedding_params

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


def identity_key(identity: dict) -> str:
    """A short digest of a model's content fingerprints (weights and tokenizer), for folder names."""
    content = {key: value for key, value in identity.items() if key != "model"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def results_path(run_dir: Path, manifest: dict, model: dict, dataset: dict) -> Path:
    """Where one pair keeps its per-example results: ``model`` and ``dataset`` are manifest entries,
    the folder named by the model's escaped name, its content and the run's settings."""
    settings = manifest["dtype"] + ("--chat-template" if manifest.get("chat_template") else "")
    folder = f"{quote(model['name'], safe='')}--{model['identity']}--{settings}"
    return run_dir / "results" / folder / f"{dataset['name']}-{dataset['sha256'][:12]}.results.jsonl"


def _merge(run_dir: Path, manifest: dict, datasets: list[dict], dtype: str, chat_template: bool,
           chains: dict | None = None) -> list[dict]:
    """The datasets of the folder after this run: those it had, each updated by this run's entry of
    its name (refused if the rows differ), and this run's new ones; refuses other settings (dtype,
    chat template, how chains of thought are written)."""
    if manifest["datasets"]:
        had = (manifest.get("dtype"), bool(manifest.get("chat_template")))
        if had != (dtype, chat_template):
            raise ValueError(f"{run_dir}: was swept with --dtype {had[0]}{' --chat-template' if had[1] else ''}; "
                             f"a run folder holds one setting, so use another --out for this one")
        if chains is not None and manifest.get("chain_of_thought") not in (None, chains):
            raise ValueError(f"{run_dir}: its chains of thought were written with other cues or stops; a run folder "
                             "holds one setting, so use another --out for this one")
    known = {entry["name"]: entry for entry in manifest["datasets"]}
    for entry in datasets:
        before = known.get(entry["name"])
        if before is not None and before["sha256"] != entry["sha256"]:
            raise ValueError(f"{run_dir}: already holds results for task {entry['name']!r} on other rows "
                             f"({before['rows']} rows from {before['path']}); use another --out or another name")
    fresh = {entry["name"]: entry for entry in datasets}
    return [fresh.pop(entry["name"], entry) for entry in manifest["datasets"]] + list(fresh.values())


def _pending(run_dir: Path, manifest: dict, model: dict, datasets: dict[str, tuple[str, Dataset]],
             identity: dict | None) -> list[dict]:
    """The manifest's datasets of this run that ``model`` has not finished (every one while the
    model's content is not known yet: a hub id not in the local cache)."""
    chosen = [entry for entry in manifest["datasets"] if entry["name"] in datasets]
    if identity is None:
        return chosen
    return [entry for entry in chosen
            if not is_complete(results_path(run_dir, manifest, model, entry),
                               _provenance(datasets[entry["name"]][1], identity, manifest, entry), entry["rows"])]


def _writing(manifest: dict, entry: dict) -> Writing:
    """What the model writes for a dataset of the run (its reasoning budget's chain of thought)."""
    budget, settings = entry.get("reasoning_tokens"), manifest.get("chain_of_thought")
    if not budget or settings is None:
        return Writing()
    return Writing(ChainOfThought(reasoning_tokens=budget, reasoning_cue=settings["reasoning_cue"],
                                  answer_cue=settings["answer_cue"], stops=tuple(settings["stops"])))


def _provenance(dataset: Dataset, identity: dict, manifest: dict, entry: dict) -> dict:
    writing = _writing(manifest, entry)
    return provenance(dataset, identity, manifest["dtype"], chat_template=manifest["chat_template"],
                      chains=writing.chains(), sampling=writing.sampling_of(dataset))


def run_sweep(run_dir: Path, datasets: dict[str, tuple[str, Dataset]], models: list[tuple[str, Member | None]],
              dtype: str, device: str, kernels: str, max_tokens_per_pack: int | None,
              score: Callable[[ScoringJob, ResultsStore], list[dict]], log: Callable[[str], None],
              offload: str = "none", memory_budget: int | None = None, group: Group = Group(),
              chat_template: bool = False, seed_groups: dict[str, dict] | None = None, scoring_path: str = "auto",
              cot: ChainOfThought | None = None) -> dict:
    """Score ``datasets`` ({name: (path, dataset)}) on ``models`` ([(name, its family entry or None)]).

    ``score(job, results_file)`` runs one job, appending to the file, and returns the new results.
    With ``offload`` other than ``none`` a model too big for the device is streamed layer by layer
    (see :func:`invscale.models.load_for_scoring`) instead of skipped.
    ``seed_groups`` ({name: {"group", "seed"}}) marks generated datasets that differ only by seed,
    which the report pools, and datasets of a reasoning budget (their ``reasoning_tokens``), scored
    after chains of thought written as ``cot`` says. ``scoring_path``: trie, cache or auto (see :mod:`invscale.scoring.paths`). With ``chat_template`` each model scores the prompts in its own chat template (a model without
    one fails with that reason). Under torchrun (``group`` of several processes) every process loads each model and scores its
    share of the packs; the main one alone logs, keeps the manifest and writes results.
    Returns the manifest, which is also saved after every model."""
    def save(manifest: dict) -> None:
        if group.is_main:
            write_manifest(run_dir, manifest)

    if not group.is_main:
        def log(line: str) -> None:
            pass

    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir}: is a file; name a folder for the run")
    manifest = read_manifest(run_dir)
    entries = [{"name": name, "path": path, "sha256": dataset.content_sha256, "rows": len(dataset.rows),
                "task_type": dataset.task_type.value, **chance_levels(dataset), **(seed_groups or {}).get(name, {})}
               for name, (path, dataset) in datasets.items()]
    chains = None if cot is None else {key: value for key, value in cot.describe().items() if key != "reasoning_tokens"}
    manifest["datasets"] = _merge(run_dir, manifest, entries, dtype, chat_template, chains)
    manifest.update(dtype=dtype, device=device, chat_template=chat_template)
    if chains is not None:
        manifest["chain_of_thought"] = chains
    run_dir.mkdir(parents=True, exist_ok=True)
    if group.is_main:
        for path, dataset in datasets.values():  # generated rows, written once the folder accepted them
            if Path(path).parent == (run_dir / "data").resolve():
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                write_dataset(dataset, path)
    kept = [entry for entry in manifest["models"] if entry["name"] not in dict(models)]
    if kept:
        log(f"{run_dir}: keeping {len(kept)} model(s) of earlier runs in the report: "
            f"{', '.join(entry['name'] for entry in kept)}")
    previous = {entry["name"]: entry for entry in manifest["models"]}
    manifest["models"] = kept
    for name, member in models:
        known = previous.get(name, {})
        entry = {"name": name, "status": "pending",
                 **{key: known.get(key) for key in ("params", "non_embedding_params", "training_tokens")},
                 **({"params": member.params, "non_embedding_params": member.non_embedding_params,
                     "training_tokens": member.training_tokens} if member else {})}
        known_params = entry["params"] if member else None
        manifest["models"].append(entry)
        try:
            identity = fingerprint(name)
        except NotLocal:
            identity = None
        except ModelLoadError as exc:
            entry.update(status="failed", reason=str(exc))
            log(f"{name}: failed to load: {exc}")
            save(manifest)
            continue
        if identity is not None:
            entry["identity"] = identity_key(identity)
        pending = group.broadcast(_pending(run_dir, manifest, entry, datasets, identity) if group.is_main else None)
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
            if chat_template:  # from the tokenizer alone, before any weights are read
                try:
                    require_chat_template(load_tokenizer(name)[0])
                except NoChatTemplate as exc:
                    raise ModelLoadError(str(exc)) from None
            loaded = load_for_scoring(name, dtype=dtype, device=device, offload=offload, memory_budget=memory_budget)
            if identity is None:  # a hub id now in the cache
                identity = fingerprint(name)
                entry["identity"] = identity_key(identity)
                pending = group.broadcast(_pending(run_dir, manifest, entry, datasets, identity)
                                          if group.is_main else None)
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
                    path = results_path(run_dir, manifest, entry, dataset_entry)
                    writing = _writing(manifest, dataset_entry)
                    with results_store(group, lambda: open_results(
                            path, dataset, identity, dtype, chat_template=chat_template, chains=writing.chains(),
                            sampling=writing.sampling_of(dataset)), path) as store:
                        scored = apply_chat_template(dataset, loaded.tokenizer) if chat_template else dataset
                        writing.check(scored)
                        job = make_job(loaded.model, loaded.tokenizer, scored, writing,
                                       max_tokens_per_pack=max_tokens_per_pack, skip_indexes=store.done_indexes(),
                                       kernels=kernels, streamed=loaded.streamed, memory_budget=memory_budget,
                                       group=group, path=scoring_path)
                        store.notes["scoring_path"] = job.path.describe()
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
