"""The ``invscale`` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from invscale.benchmark.report import figures_table
from invscale.benchmark.run import METHODS, BenchmarkMismatch, available_methods, run_benchmark
from invscale.benchmark.workload import OPT_SHAPES, WordIdTokenizer, build_opt, synthetic_dataset
from invscale.data import DataError, TaskType, read_dataset
from invscale.kernels.launch import KernelUnavailable, resolve_kernels
from invscale.messages import first_line
from invscale.models import (DTYPES, ModelLoadError, NotLocal, fingerprint, load_for_scoring, load_model,
                             load_tokenizer, parse_memory, resolve_device, resolve_dtype)
from invscale.progress import ProgressReport
from invscale.results import ResultsError, ResultsStore, check_out_path, open_results
from invscale.scoring import distributed
from invscale.scoring.attention import backends
from invscale.scoring.chat import apply_chat_template, require_chat_template
from invscale.scoring.metrics import TOO_LONG_COLUMNS, seed_summary, summarize
from invscale.scoring.scorer import DEFAULT_MAX_TOKENS_PER_PACK, ScoreStats, ScoringJob, check_too_long
from invscale.sweep.family import family_help

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Fast, exact multiple-choice scoring for inverse-scaling studies.")
# No console markup: messages hold file names, model names and user text that may contain brackets.
err = Console(stderr=True, markup=False)
out = Console(markup=False)


@app.callback()
def main() -> None:
    """Fast, exact multiple-choice scoring for inverse-scaling studies."""


MODEL_HELP = "Hub id, local checkpoint directory, .gguf file, tiny-opt or smollm2-135m."
TOO_LONG_HELP = ("Rows longer than the model takes: error (list them all and stop), skip (score the rest; "
                 "skipped rows are recorded in the results and the summary) or truncate-left (drop the oldest "
                 "prompt tokens, as lm-evaluation-harness does; a truncated column says how many).")
CHAT_TEMPLATE_HELP = ("Wrap each prompt in the model's chat template (one user turn, the assistant's turn "
                      "opened), for instruct models; the classes follow as they are.")
X_AXIS_HELP = "Plots' x axis: params, non-embedding (parameters) or flops (6·N·D training FLOPs, for families)."


def _print_table(table) -> None:
    """Print ``table`` whole: at its natural width where that is wider than the terminal or log
    (which then wraps lines) rather than with cells cut to fit."""
    natural = Measurement.get(out, out.options.update_width(10**4), table).maximum
    width = out.width
    out.width = max(width, natural)
    try:
        out.print(table)
    finally:
        out.width = width


def _warn(message: str, label: str = "warning") -> None:
    """One warning (or note) line on standard error."""
    err.print(Text.assemble((f"{label}:", "yellow"), f" {message}"), soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True)
    raise typer.Exit(code)


GENERATE_PROGRESS_ROWS = 100_000


@app.command()
def generate(
    task: Optional[str] = typer.Argument(None, help="Task name (see --list)."),
    n: int = typer.Option(100, "--n", min=1, help="Number of rows."),
    seed: int = typer.Option(0, min=0, help="Random seed (0 or more): the same seed gives the same rows."),
    shots: Optional[int] = typer.Option(None, min=0, help="Worked examples in the shared preface (task default if unset)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .jsonl or .csv; standard output if unset."),
    list_tasks: bool = typer.Option(False, "--list", help="List the tasks with a one-line description."),
) -> None:
    """Generate a prize-format task set (JSONL on standard output unless --out is given)."""
    from invscale.data import write_dataset
    from invscale.generators import REGISTRY, generate as generate_task

    if list_tasks:
        width = max(map(len, REGISTRY))
        for spec in REGISTRY.values():
            out.print(f"{spec.name:<{width}}  {spec.description}", soft_wrap=True)
        return
    if task is None:
        _fail("name a task, or pass --list to see them")
    try:
        if n >= GENERATE_PROGRESS_ROWS:  # long enough to want progress
            with ProgressReport(err, f"generating {task}", n, "rows") as progress:
                dataset, generated = generate_task(task, n, seed, shots, on_drawn=progress.advance)
        else:
            dataset, generated = generate_task(task, n, seed, shots)
    except ValueError as exc:
        _fail(str(exc))
    for note in generated.notes:
        _warn(note, "note")
    try:
        if out_path is not None and out_path.suffix.lower() not in (".jsonl", ".csv"):
            raise ValueError(f"--out {out_path}: name a .jsonl or .csv file")
        if n >= GENERATE_PROGRESS_ROWS:
            err.print(f"writing {n:,} rows to {out_path or 'standard output'}", soft_wrap=True)
        write_dataset(dataset, out_path)
    except (OSError, ValueError) as exc:
        _fail(_one_line(exc))


def _default_out(data: str) -> Path:
    stem = "stdin" if data == "-" else Path(data).stem
    return Path(f"{stem}.results.jsonl")


@app.command()
def score(
    data: str = typer.Argument(..., help="Prize-format CSV or JSONL file, or - for standard input."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help=MODEL_HELP + " Default: tiny-opt (random weights, for trying the tool)."),
    dtype: str = typer.Option("float32", help=f"One of {', '.join(DTYPES)}."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    max_tokens_per_pack: Optional[int] = typer.Option(
        None, "--max-tokens-per-pack", "--batch", min=1,
        help=f"Unique tokens per packed forward pass (default: {DEFAULT_MAX_TOKENS_PER_PACK['cpu']} on CPU, "
             f"{DEFAULT_MAX_TOKENS_PER_PACK['cuda']} on CUDA)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o",
                                            help="Results file (.jsonl or .csv); default <data>.results.jsonl."),
    task_type: Optional[TaskType] = typer.Option(None, help="Override the task type the columns imply."),
    kernels: str = typer.Option("auto", help="Fused LM head and tree attention: triton, torch, or auto "
                                             "(torch; triton on CPU needs TRITON_INTERPRET=1)."),
    attention: str = typer.Option("auto", help=f"Tree attention backend: auto (triton with --kernels triton, "
                                                f"else flex on CUDA and segments on CPU), {', '.join(backends())}."),
    overwrite: bool = typer.Option(False, help="Start over instead of resuming an existing results file."),
    offload: str = typer.Option("auto", help="none (model resident), disk (stream decoder layers from the "
                                             "checkpoint, for models bigger than the device), cpu (the same, "
                                             "keeping the layers in host memory after the first read) or auto "
                                             "(disk when the weights exceed --gpu-memory)."),
    gpu_memory: Optional[str] = typer.Option(None, help="Memory budget for streamed scoring, e.g. 20GiB."),
    too_long: str = typer.Option("error", help=TOO_LONG_HELP),
    chat_template: bool = typer.Option(False, help=CHAT_TEMPLATE_HELP),
) -> None:
    """Score every row of DATA with MODEL and write per-example results; resumes an interrupted run."""
    started = time.perf_counter()
    budget = None
    if model is None:
        model = "tiny-opt"
        _warn("no --model given: scoring with tiny-opt, a tiny OPT with random weights (its scores mean nothing); "
              "pass --model for a real one")

    def load():
        return load_for_scoring(model, dtype=dtype, device=device, offload=offload, memory_budget=budget)

    try:
        group = distributed.current()
        check_too_long(too_long)
        dataset = read_dataset(data, task_type)
        for warning in dataset.warnings if group.is_main else ():
            _warn(warning)
        out_path = out_path or _default_out(data)
        check_out_path(out_path, data)
        budget = parse_memory(gpu_memory) if gpu_memory is not None else None
        resolve_device(device)
        if chat_template:  # from the tokenizer alone, before any weights are read
            require_chat_template(load_tokenizer(model)[0])
        identity, loaded = _identify(model, load)
        with distributed.results_store(group, lambda: open_results(out_path, dataset, identity, dtype,
                                                                   overwrite=overwrite, too_long=too_long,
                                                                   chat_template=chat_template),
                                       out_path) as store:
            for warning in store.warnings:
                _warn(warning)
            done, job = store.done_indexes(), None
            if len(done) < len(dataset.rows):
                loaded = loaded or load()
                scored = apply_chat_template(dataset, loaded.tokenizer) if chat_template else dataset
                job = ScoringJob(loaded.model, loaded.tokenizer, scored, max_tokens_per_pack=max_tokens_per_pack,
                                 backend=attention, skip_indexes=done, kernels=kernels, streamed=loaded.streamed,
                                 memory_budget=budget, group=group, too_long=too_long)
                if group.is_main:
                    _warn_too_long(job)
            store.start()
            if store.existing:
                err.print(f"resuming: {len(store.existing)} of {len(dataset.rows)} rows already in {out_path}",
                          soft_wrap=True)
            results = store.existing + (_run_with_progress(job, store) if job else [])
            store.finalize(results, time.perf_counter() - started if job else 0.0)
    except (DataError, ModelLoadError, ResultsError, KernelUnavailable, ValueError, OSError) as exc:
        _fail(_one_line(exc))
    except KeyboardInterrupt:
        _fail("interrupted before scoring began; nothing was written", 130)
    if group.is_main:
        _print_summary(dataset.name, model, results, job.stats if job else None, out_path,
                       time.perf_counter() - started, job.stream_times if job else None)


def _identify(model: str, load) -> tuple[dict, object]:
    """(the model's fingerprint, the loaded model when it had to be loaded first: a hub id not yet
    in the local cache)."""
    try:
        return fingerprint(model), None
    except NotLocal:
        loaded = load()
        return fingerprint(model), loaded


def _one_line(exc: Exception) -> str:
    """An error's message as one line (an OSError says what and where)."""
    if isinstance(exc, OSError) and not isinstance(exc, (ModelLoadError,)):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or exc}"
    return first_line(exc)


SEED_TASKS = "triviamod,gambling,decoy,expert,pretend"


@app.command()
def evaluate(
    tasks: str = typer.Option(SEED_TASKS, help="Comma-separated generator names (see: invscale generate --list)."),
    n: int = typer.Option(300, "--n", min=1, help="Items per task (and per seed)."),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="Generator seed, or several (0,1,2): each seed's rows are "
                                                             "scored and the table aggregates them, with intervals "
                                                             "across seeds and items."),
    shots: Optional[str] = typer.Option(None, help="Worked examples in each task's shared preface: one count or "
                                                   "several (0,3), each its own row of the table (default: the "
                                                   "task's own)."),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help=MODEL_HELP),
    dtype: str = typer.Option("float32", help=f"One of {', '.join(DTYPES)}."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    kernels: str = typer.Option("auto", help="triton, torch or auto (as for score)."),
    out_dir: Path = typer.Option(Path("invscale-eval"), "--out", "-o",
                                 help="Folder for each task's data, results and the summary CSV."),
    overwrite: bool = typer.Option(False, help="Start over instead of resuming results already in --out."),
    too_long: str = typer.Option("error", help=TOO_LONG_HELP),
    chat_template: bool = typer.Option(False, help=CHAT_TEMPLATE_HELP),
) -> None:
    """Generate each task, score it with MODEL and print accuracy and loss per task against chance.

    Each task's rows go to OUT/NAME.jsonl and its results to OUT/NAME.results.jsonl (resumable, like
    score), NAME being the task, with -Kshot when --shots is given and -seedS with several seeds;
    the table (one row per task and shot count, with 95% intervals) is also OUT/summary.csv."""
    from invscale.data import with_content_hash, write_dataset
    from invscale.generators import generate as generate_task, variant_name
    from invscale.scoring.metrics import chance_levels

    loaded = None
    rows = []
    try:
        group = distributed.current()
        check_too_long(too_long)
        seed_list = _counts("--seeds", seeds)
        shot_list = _counts("--shots", shots) if shots is not None else [None]
        resolve_device(device)
        if chat_template:
            require_chat_template(load_tokenizer(model)[0])
        out_dir.mkdir(parents=True, exist_ok=True)
        identity, loaded = _identify(model, lambda: load_model(model, dtype=dtype, device=device))
        cells = [(task, shot_count) for task in tasks.split(",") for shot_count in shot_list]
        for task, shot_count in cells:  # every task name and shot count is checked before any is scored
            generate_task(task, 1, seed_list[0], shot_count)

        def score_one(name: str, dataset) -> tuple[list[dict], float]:
            """(the results of ``dataset``, the seconds its store's runs spent scoring)."""
            nonlocal loaded
            path = out_dir / f"{name}.results.jsonl"
            with distributed.results_store(group, lambda: open_results(path, dataset, identity, dtype,
                                                                       overwrite=overwrite, too_long=too_long,
                                                                       chat_template=chat_template),
                                           path) as store:
                if group.is_main:  # the data beside its results, written once the store accepted it
                    write_dataset(dataset, out_dir / f"{name}.jsonl")
                began = time.perf_counter()
                done, new_results, job = store.done_indexes(), [], None
                if len(done) < len(dataset.rows):
                    loaded = loaded or load_model(model, dtype=dtype, device=device)
                    scored = apply_chat_template(dataset, loaded.tokenizer) if chat_template else dataset
                    job = ScoringJob(loaded.model, loaded.tokenizer, scored, skip_indexes=done, kernels=kernels,
                                     group=group, too_long=too_long)
                store.start()
                if job is not None:
                    if group.is_main:
                        err.print(f"{name}: scoring {job.stats.items} items", soft_wrap=True)
                        _warn_too_long(job)
                    new_results = _run_with_progress(job, store)
                results = store.existing + new_results
                seconds = store.finalize(results, time.perf_counter() - began if job is not None else 0.0)
            return results, seconds

        for task, shot_count in cells:
            per_seed = []
            for seed in seed_list:
                name = variant_name(task, shot_count, seed if len(seed_list) > 1 else None)
                dataset = with_content_hash(generate_task(task, n, seed, shot_count)[0])
                per_seed.append((*score_one(name, dataset), dataset))
            rows.append({"task": task, "shots": "default" if shot_count is None else shot_count,
                         "seeds": ",".join(map(str, seed_list)),
                         **seed_summary([results for results, _, _ in per_seed]),
                         **chance_levels(per_seed[0][2]), "seconds": sum(seconds for _, seconds, _ in per_seed)})
    except (DataError, ModelLoadError, ResultsError, KernelUnavailable, ValueError, OSError) as exc:
        _fail(_one_line(exc))
    if not group.is_main:
        return
    _write_summary_csv(out_dir / "summary.csv", rows)
    seeds_title = f"seed {seed_list[0]}" if len(seed_list) == 1 else f"seeds {','.join(map(str, seed_list))}"
    table = Table(title=f"{model} · {n} items per task{' and seed' if len(seed_list) > 1 else ''}, {seeds_title}",
                  caption="95% bootstrap intervals" + (" across seeds and items" if len(seed_list) > 1 else ""))
    with_shots = shots is not None
    for column in ("task", *(("shots",) if with_shots else ()), "n", "accuracy (95%)", "chance", "mean loss (95%)",
                   "chance loss", "seconds"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for row in rows:
        table.add_row(row["task"], *((str(row["shots"]),) if with_shots else ()), str(row["n"]),
                      f"{row['accuracy']:.3f} ({row['accuracy_low']:.3f}–{row['accuracy_high']:.3f})",
                      f"{row['chance_accuracy']:.3f}",
                      f"{row['mean_loss']:.3f} ({row['loss_low']:.3f}–{row['loss_high']:.3f})",
                      f"{row['chance_loss']:.3f}", f"{row['seconds']:.1f}")
    _print_table(table)
    out.print(f"results and summary.csv in {out_dir}")


def _counts(option: str, text: str) -> list[int]:
    """Comma-separated counts of 0 or more, e.g. ``0,3``; ValueError naming ``option`` otherwise."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(value < 0 for value in values) or len(set(values)) != len(values):
        raise ValueError(f"{option} {text}: give distinct whole numbers of 0 or more, separated by commas (e.g. 0,3)")
    return values


@app.command()
def sweep(
    data: list[str] = typer.Argument(..., help="Prize-format dataset files (their file names name the tasks), or "
                                               "generator names (see: invscale generate --list)."),
    family: Optional[str] = typer.Option(None, help=f"A model family: {family_help()}."),
    models: Optional[str] = typer.Option(None, help="Comma-separated models (hub ids, directories, .gguf, built-ins)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder, e.g. runs/NAME (resumable)."),
    dtype: str = typer.Option("float32", help=f"One of {', '.join(DTYPES)}."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    kernels: str = typer.Option("auto", help="triton, torch or auto (as for score)."),
    max_tokens_per_pack: Optional[int] = typer.Option(None, min=1, help="Unique tokens per packed forward pass."),
    offload: str = typer.Option("auto", help="none, disk, cpu or auto, as for score: streaming scores models "
                                             "bigger than the device instead of skipping them."),
    gpu_memory: Optional[str] = typer.Option(None, help="Memory budget for streamed scoring, e.g. 20GiB."),
    x_axis: str = typer.Option("params", help=X_AXIS_HELP),
    chat_template: bool = typer.Option(False, help=CHAT_TEMPLATE_HELP),
    n: int = typer.Option(300, "--n", min=1, help="Generator names: rows per task, shot count and seed."),
    seeds: str = typer.Option("0", "--seeds", help="Generator names: seed, or several (0,1,2), pooled in the report "
                                                   "with intervals across seeds and items."),
    shots: Optional[str] = typer.Option(None, help="Generator names: worked examples in the shared preface, one "
                                                   "count or several (0,3), each its own task in the report."),
) -> None:
    """Score every DATA file (or generated task) on every model, then report tables, plots and scaling
    verdicts.

    One model is loaded at a time; finished (dataset, model, dtype) pairs are not redone."""
    from invscale.sweep.family import family_members
    from invscale.sweep.run import read_manifest, run_sweep
    from invscale.sweep.tasks import sweep_datasets

    try:
        group = distributed.current()
        if (family is None) == (models is None):
            raise ValueError("give exactly one of --family or --models")
        chosen = ([(m.model, m) for m in family_members(family)] if family
                  else [(m, None) for m in models.split(",") if m])
        datasets, seed_groups = sweep_datasets(data, out_dir, n, _counts("--seeds", seeds),
                                               _counts("--shots", shots) if shots is not None else [None])
        budget = parse_memory(gpu_memory) if gpu_memory is not None else None
        run_sweep(out_dir, datasets, chosen, dtype, device, kernels, max_tokens_per_pack,
                  score=_run_with_progress, log=lambda line: err.print(line, soft_wrap=True),
                  offload=offload, memory_budget=budget, group=group, chat_template=chat_template,
                  seed_groups=seed_groups)
    except (DataError, ModelLoadError, ResultsError, KernelUnavailable, ValueError) as exc:
        _fail(str(exc))
    if not group.is_main:
        return
    try:
        _print_report(out_dir, x_axis)
    except ValueError as exc:
        _fail(str(exc))
    unfinished = [m for m in read_manifest(out_dir)["models"] if m["status"] != "done"]
    if unfinished:
        err.print(f"{len(unfinished)} of {len(chosen)} models did not finish every dataset "
                  f"({', '.join(m['name'] for m in unfinished)}); run the same command again to retry", soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run folder written by invscale sweep."),
           x_axis: str = typer.Option("params", help=X_AXIS_HELP)) -> None:
    """Re-render a sweep's summary table, plots and verdicts from its saved results."""
    try:
        _print_report(run_dir, x_axis)
    except ValueError as exc:
        _fail(str(exc))


def _print_report(run_dir: Path, x_axis: str = "params") -> None:
    from invscale.sweep.report import build_report
    from invscale.sweep.run import read_manifest

    summary, verdicts = build_report(run_dir, x_axis)
    table = Table(title=f"sweep {run_dir}")
    for column in ("task", "model", "params", "n", "accuracy (95% CI)", "mean loss (95% CI)"):
        table.add_column(column, justify="left" if column in ("task", "model") else "right")
    for row in summary:
        accuracy = (f"{row['accuracy']:.3f} ({row['accuracy_low']:.3f}–{row['accuracy_high']:.3f})"
                    if "accuracy" in row else "—")
        table.add_row(row["task"], row["model"], f"{row['params'] / 1e6:,.1f}M", str(row["n"]), accuracy,
                      f"{row['mean_loss']:.3f} ({row['loss_low']:.3f}–{row['loss_high']:.3f})")
    _print_table(table)
    for model in read_manifest(run_dir)["models"]:
        if model["status"] != "done":
            out.print(f"{model['name']}: {model['status']}: {model.get('reason', '')}", soft_wrap=True)
    for task, verdict in verdicts.items():
        out.print(Text.assemble((task, "bold"), f": {verdict.kind} — {verdict.reason}"), soft_wrap=True)
    out.print(f"summary.csv, verdicts.json and plots/ in {run_dir}")


def _write_summary_csv(path: Path, rows: list[dict]) -> None:
    import csv

    columns = ["task", "shots", "seeds", "n", "skipped", "accuracy", "accuracy_low", "accuracy_high", "acc_norm",
               "chance_accuracy", "mean_loss", "loss_low", "loss_high", "chance_loss", "seconds"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _run_with_progress(job: ScoringJob, results_file: ResultsStore) -> list[dict]:
    if not job.group.is_main:  # under torchrun, the main process shows progress and writes results
        for _ in job.results():
            pass
        return []
    new_results: list[dict] = []
    started = time.perf_counter()
    tokens = 0
    try:
        with ProgressReport(err, "scoring", job.stats.items) as progress:
            if job.streamed is not None:
                progress.add_counter("layers", len(job.streamed.layers) * len(job.groups), "streamed")
                job.on_layer = lambda index, count: progress.count("layers")
            pending: list[dict] = []

            def on_pack(rows_finished: int, pack_tokens: int) -> None:
                nonlocal tokens
                tokens += pack_tokens
                results_file.append(pending)
                new_results.extend(pending)
                pending.clear()
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.advance(rows_finished, f"{tokens / elapsed:,.0f} tokens/s")

            for result in job.results(on_pack=on_pack):
                pending.append(result)
    except KeyboardInterrupt:
        err.print(f"interrupted: {len(results_file.existing) + len(new_results)} results kept in "
                  f"{results_file.path}; run the same command again to resume", soft_wrap=True)
        raise typer.Exit(130)
    except torch.cuda.OutOfMemoryError:
        _fail(f"out of GPU memory on packs of up to {job.max_tokens_per_pack} tokens; {len(results_file.existing) + len(new_results)} "
              f"results are kept in {results_file.path}: lower --max-tokens-per-pack and run the same command again")
    return new_results


@app.command()
def bench(
    shape: str = typer.Option("auto", help=f"Random-init OPT shape: {', '.join(OPT_SHAPES)}; auto is opt-125m "
                                           "on CUDA and tiny on CPU."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Benchmark a real checkpoint instead of --shape (needed with --data)."),
    data: Optional[str] = typer.Option(None, help="A prize-format file to use instead of the synthetic workload."),
    items: int = typer.Option(256, min=1, help="Synthetic workload: rows."),
    prompt_len: int = typer.Option(256, min=1, help="Synthetic workload: prompt tokens per row."),
    options: int = typer.Option(4, min=1, help="Synthetic workload: options per row."),
    option_len: int = typer.Option(6, min=1, help="Synthetic workload: tokens per option."),
    preface_len: int = typer.Option(0, min=0, help="Synthetic workload: tokens of a preface every row shares."),
    dtype: str = typer.Option("auto", help=f"auto (bfloat16 on CUDA, float32 on CPU) or one of {', '.join(DTYPES)}."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    methods: Optional[str] = typer.Option(None, help=f"Comma-separated subset of {', '.join(METHODS)} "
                                                     "(default: all that can run here)."),
    max_tokens_per_pack: Optional[int] = typer.Option(None, min=1, help="invscale's unique tokens per pass."),
    repeats: int = typer.Option(1, min=1, help="Timed runs per method after the warm-up (median reported)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
    host_only: bool = typer.Option(False, "--host-only",
                                   help="Time only the host side for --model's tokenizer on --data: tokenizing, "
                                        "planning and building every pack (no weights loaded)."),
) -> None:
    """Time invscale against the plain HF ways on one workload, after checking they agree.

    Baselines: one forward pass per option, and the prompt's KV reused for its options. With
    --host-only, the CPU work a run does beside the device, against the FLOP floor of its unique
    tokens on OPT-1.3B and an H100."""
    import json

    if host_only:
        return _bench_host(model, data, max_tokens_per_pack, json_path)
    try:
        target = resolve_device(device)
        dtype_name = ("bfloat16" if target.type == "cuda" else "float32") if dtype == "auto" else dtype
        chosen = available_methods(target) if methods is None else methods.split(",")
        unknown = [m for m in chosen if m not in METHODS]
        if unknown:
            raise ValueError(f"--methods {','.join(unknown)}: choose from {', '.join(METHODS)}")
        if "invscale-triton" in chosen:
            resolve_kernels("triton", target)
        if data is not None:
            if model is None:
                raise ValueError("--data needs --model (the checkpoint whose tokenizer reads the file)")
            dataset = read_dataset(data)
        if model is not None:
            loaded = load_model(model, dtype=dtype_name, device=str(target))
            lm, tokenizer, title = loaded.model, loaded.tokenizer, model
        else:
            if shape == "auto":
                shape = "opt-125m" if target.type == "cuda" else "tiny"
            if shape not in OPT_SHAPES:
                raise ValueError(f"--shape {shape}: choose one of {', '.join(OPT_SHAPES)}")
            lm, tokenizer, title = build_opt(shape, resolve_dtype(dtype_name), target), WordIdTokenizer(), shape
        if data is None:
            dataset = synthetic_dataset(items, prompt_len, options, option_len, preface_len,
                                        vocab=lm.get_output_embeddings().weight.shape[0])
        if methods is None and "invscale-triton" not in chosen:
            err.print("invscale-triton left out: its kernels need a CUDA GPU (or TRITON_INTERPRET=1, slow, and "
                      "--methods naming it)", soft_wrap=True)
        figures = run_benchmark(lm, tokenizer, dataset, chosen, repeats, max_tokens_per_pack,
                                log=lambda line: err.print(line, soft_wrap=True))
    except (DataError, ModelLoadError, KernelUnavailable, BenchmarkMismatch, ValueError) as exc:
        _fail(str(exc))
    except torch.cuda.OutOfMemoryError:
        _fail("out of GPU memory: try a smaller --shape or workload, or fewer --methods")
    except KeyboardInterrupt:
        _fail("interrupted: the benchmark stopped before its figures were complete; nothing was written", 130)
    figures["model"] = title
    _print_table(figures_table(figures, f"invscale bench · {title}"))
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


@app.command("lm-eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
def lm_eval_command(ctx: typer.Context) -> None:
    """lm-evaluation-harness's command line with --model invscale available; takes lm_eval's own
    arguments (see invscale lm-eval --help)."""
    try:
        from invscale.integrations import lm_eval as integration
    except ImportError:
        _fail("lm-evaluation-harness is not installed; install it with: pip install -e '.[lm-eval]'")
    try:
        integration.main(ctx.args)
    except (KeyboardInterrupt, SystemExit, typer.Exit):
        raise
    except Exception as exc:  # lm-eval's own errors and ours, as one line
        _fail(f"lm-eval: {_one_line(exc)}")


def _bench_host(model: Optional[str], data: Optional[str], max_tokens_per_pack: Optional[int],
                json_path: Optional[Path]) -> None:
    import json

    from invscale.benchmark.host import host_benchmark
    from invscale.models import load_tokenizer

    try:
        if model is None or data is None:
            raise ValueError("--host-only needs --model (whose tokenizer is timed) and --data")
        tokenizer, config = load_tokenizer(model)
        read_began = time.perf_counter()
        dataset = read_dataset(data)
        figures = {"model": model, "read_seconds": time.perf_counter() - read_began,
                   **host_benchmark(tokenizer, config, dataset, max_tokens_per_pack)}
    except (DataError, ModelLoadError, ValueError) as exc:
        _fail(str(exc))
    table = Table(title=f"invscale bench --host-only · {model} · {dataset.name}", show_header=False)
    rows = [("rows", f"{figures['rows']:,}"), ("naive tokens", f"{figures['naive_tokens']:,}"),
            ("unique tokens", f"{figures['unique_tokens']:,} ({figures['packs']} packs, preface "
                              f"{figures['preface_tokens']})"),
            ("pairs spliced / whole", f"{figures['spliced_pairs']:,} / {figures['whole_string_pairs']:,}"),
            ("read file", f"{figures['read_seconds']:.3f} s"),
            ("host (tokenize + plan + build)", f"{figures['host_seconds']:.3f} s, "
                                               f"{figures['naive_tokens_per_second']:,.0f} naive tokens/s"),
            ("first pack ready", f"{figures['first_pack_seconds']:.3f} s"),
            ("OPT-1.3B H100 floor", f"{figures['floor_seconds']:.3f} s"),
            ("host ÷ floor", f"{figures['host_over_floor']:.2f}"), ("peak RSS", f"{figures['peak_rss_mib']:,.0f} MiB")]
    for name, value in rows:
        table.add_row(name, value)
    _print_table(table)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


def _warn_too_long(job: ScoringJob) -> None:
    """One line when rows too long for the model are skipped or truncated."""
    if job.too_long_rows:
        done = "skipped" if job.too_long == "skip" else "scored with their oldest prompt tokens dropped"
        _warn(f"{job.too_long_rows} row(s) longer than the model takes are {done} (--too-long {job.too_long}; "
              f"see the results' {TOO_LONG_COLUMNS[job.too_long][0]} column)")


def _print_summary(name: str, model: str, results: list[dict], stats: ScoreStats | None, out_path: Path,
                   seconds: float, stream_times=None) -> None:
    summary = summarize(results)
    table = Table(title=f"{name} · {model}", show_header=False)
    table.add_row("examples", str(summary["n"]))
    if "skipped" in summary:
        table.add_row("skipped", f"{summary['skipped']} (too long for the model)")
    if "truncated" in summary:
        table.add_row("truncated", f"{summary['truncated']} (oldest prompt tokens dropped)")
    if "accuracy" in summary:
        table.add_row("accuracy", f"{summary['accuracy']:.4f}")
    if "acc_norm" in summary:
        table.add_row("acc_norm", f"{summary['acc_norm']:.4f}")
    if "mean_loss" in summary:
        table.add_row("mean loss", f"{summary['mean_loss']:.4f}")
    table.add_row("wall time", f"{seconds:.1f} s")
    if stats is not None and stats.items:
        ratio = stats.naive_tokens / max(stats.unique_tokens, 1)
        table.add_row("tokens computed", f"{stats.unique_tokens:,} unique vs {stats.naive_tokens:,} naive "
                                         f"({ratio:.1f}x fewer; preface {stats.preface_tokens}, {stats.packs} packs)")
    if stream_times is not None:
        table.add_row("streamed layers", f"{stream_times.layers} layer passes: {stream_times.load:.1f} s reading "
                                         f"weights, {stream_times.compute:.1f} s computing")
    table.add_row("results", str(out_path))
    _print_table(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
