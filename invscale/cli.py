"""The ``invscale`` command line: argument parsing and printing over :mod:`invscale.api`, one
function per command."""

from __future__ import annotations

import codecs
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from invscale import api
from invscale.benchmark.report import figures_table
from invscale.benchmark.run import METHODS, BenchmarkMismatch
from invscale.benchmark.workload import OPT_SHAPES
from invscale.chain_of_thought import ANSWER_CUE, REASONING_CUE, REASONING_STOPS, ChainOfThought
from invscale.data import DataError, TaskType, write_dataset
from invscale.kernels.launch import KernelUnavailable
from invscale.messages import first_line
from invscale.models import DTYPES, ModelLoadError
from invscale.numeric import NumericSampling
from invscale.progress import ProgressReport
from invscale.results import ResultsError
from invscale.scoring.attention import backends
from invscale.scoring.scorer import DEFAULT_MAX_TOKENS_PER_PACK
from invscale.study.family import family_help

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Fast, exact multiple-choice scoring for inverse-scaling studies.")
# No console markup: messages hold file names, model names and user text that may contain brackets.
err = Console(stderr=True, markup=False, highlight=False)
out = Console(markup=False, highlight=False)
PATH_HELP = ("How log-probs are computed, exactly either way: trie (each unique token once, for the architectures "
             "proven there), cache (the model's own forward and cache, for any causal LM) or auto (the trie where it "
             "is exact, else the cache).")
USER_ERRORS = (DataError, ModelLoadError, ResultsError, KernelUnavailable, api.OutOfMemory, ValueError, TypeError,
               OSError)


@app.callback()
def main() -> None:
    """Fast, exact multiple-choice scoring for inverse-scaling studies."""


MODEL_HELP = "Hub id, local checkpoint directory, .gguf file, tiny-opt or smollm2-135m."
TOO_LONG_HELP = ("Rows longer than the model takes: error (list them all and stop), skip (score the rest; "
                 "skipped rows are recorded in the results and the summary) or truncate-left (drop the oldest "
                 "prompt tokens, as lm-evaluation-harness does; a truncated column says how many).")
CHAT_TEMPLATE_HELP = ("Wrap each prompt in the model's chat template (one user turn, the assistant's turn "
                      "opened), for instruct models; the classes follow as they are.")
COT_HELP = ("Chain of thought: after the prompt and --reasoning-cue the model writes a chain (greedy, up to "
            "--reasoning-tokens, ending at a --reasoning-stop or EOS), then every class is scored exactly after the "
            "chain and --answer-cue; results add the chain, its length, why it stopped and the class its text names.")
REASONING_CUE_HELP = "Text after the prompt that asks for a chain of thought."
ANSWER_CUE_HELP = "Text after the chain that introduces the answer (the model's own is cut and replaced by it)."
REASONING_STOP_HELP = ("A string that ends a chain (repeat for several; backslash escapes such as \\n are read); "
                       "default: a blank line.")
X_AXIS_HELP = "Plots' x axis: params, non-embedding (parameters) or flops (6·N·D training FLOPs, for families)."
GENERATE_PROGRESS_ROWS = 100_000


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


def _say(message: str) -> None:
    """One line of what a run is doing, on standard error."""
    err.print(message, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True)
    raise typer.Exit(code)


def _one_line(exc: Exception) -> str:
    """An error's message as one line (an OSError says what and where)."""
    if isinstance(exc, OSError) and not isinstance(exc, (ModelLoadError,)):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or exc}"
    return first_line(exc)


def _counts(option: str, text: str) -> list[int]:
    """Comma-separated counts of 0 or more, e.g. ``0,3``; ValueError naming ``option`` otherwise."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(value < 0 for value in values) or len(set(values)) != len(values):
        raise ValueError(f"{option} {text}: give distinct whole numbers of 0 or more, separated by commas (e.g. 0,3)")
    return values


def _chain_settings(cot: bool, budgets: Optional[str], reasoning_cue: str, answer_cue: str,
                    stops: Optional[list[str]]) -> tuple[Optional[ChainOfThought], Optional[list[int]]]:
    """The chain-of-thought settings the options ask for, and the budgets listed (None: not given)."""
    if not cot:
        given = [option for option, value in (("--reasoning-tokens", budgets), ("--reasoning-stop", stops)) if value]
        if given:
            raise ValueError(f"{given[0]}: give --cot too (it sets how a chain of thought is written)")
        return None, None
    listed = _counts("--reasoning-tokens", budgets) if budgets is not None else None
    read_stops = tuple(codecs.decode(stop, "unicode_escape") for stop in stops) if stops else REASONING_STOPS
    settings = ChainOfThought(reasoning_tokens=listed[0] if listed else ChainOfThought.reasoning_tokens,
                              reasoning_cue=reasoning_cue, answer_cue=answer_cue, stops=read_stops)
    return settings, listed


def _interval(row: dict, value: str, low: str, high: str) -> str:
    if value not in row:
        return "-"
    return f"{row[value]:.3f} ({row[low]:.3f}–{row[high]:.3f})"


def _number(row: dict, value: str) -> str:
    return f"{row[value]:.3f}" if value in row else "-"


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
    from invscale.generators import REGISTRY

    if list_tasks:
        from invscale.generators.ideas import IDEAS

        width = max(map(len, REGISTRY))
        for spec in REGISTRY.values():
            out.print(f"{spec.name:<{width}}  {spec.description}", soft_wrap=True)
        out.print("\nThe Inverse Scaling Prize ideas list (task, idea):", soft_wrap=True)
        for idea, tasks, why_none in IDEAS:
            named = ", ".join(tasks) if tasks else "(none)"
            out.print(f"{named:<{width}}  {idea}{'' if tasks else ': no task, ' + why_none}", soft_wrap=True,
                      markup=False)
        return
    if task is None:
        _fail("name a task, or pass --list to see them")
    try:
        if out_path is not None and out_path.suffix.lower() not in (".jsonl", ".csv"):
            raise ValueError(f"--out {out_path}: name a .jsonl or .csv file")
        if n >= GENERATE_PROGRESS_ROWS:  # long enough to want progress
            with ProgressReport(err, f"generating {task}", n, "rows") as progress:
                dataset = api.generate(task, n, seed, shots, on_drawn=progress.advance)
            _say(f"writing {n:,} rows to {out_path or 'standard output'}")
        else:
            dataset = api.generate(task, n, seed, shots)
        for note in dataset.warnings:
            _warn(note, "note")
        write_dataset(dataset, out_path)
    except (OSError, ValueError) as exc:
        _fail(_one_line(exc))


def _default_out(data: str) -> Path:
    stem = "stdin" if data == "-" else Path(data).stem
    return Path(f"{stem}.results.jsonl")


@app.command()
def score(
    data: str = typer.Argument(..., help="Prize-format CSV or JSONL file, - for standard input, or a Hugging Face "
                                         "dataset: a local dataset folder or a hub id (e.g. inverse-scaling/NeQA)."),
    split: Optional[str] = typer.Option(None, help="The split of a Hugging Face dataset (needed when it has several)."),
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
    mutual_info: bool = typer.Option(False, help="Also lm-eval's acc_mutual_info (classification): each class's "
                                                 "log-prob minus its log-prob with no prompt, one more short pass."),
    path: str = typer.Option("auto", help=PATH_HELP),
    cot: bool = typer.Option(False, "--cot", help=COT_HELP),
    reasoning_tokens: Optional[str] = typer.Option(None, help="The chain's token budget with --cot (default 256; "
                                                               "0: no chain, the plain task)."),
    reasoning_cue: str = typer.Option(REASONING_CUE, help=REASONING_CUE_HELP),
    answer_cue: str = typer.Option(ANSWER_CUE, help=ANSWER_CUE_HELP),
    reasoning_stop: Optional[list[str]] = typer.Option(None, help=REASONING_STOP_HELP),
    samples: int = typer.Option(10, help="Numeric rows: samples per row (their valid parses' mean is the estimate)."),
    temperature: float = typer.Option(0.5, help="Numeric rows: sampling temperature (0: one greedy sample)."),
    top_p: float = typer.Option(1.0, help="Numeric rows: nucleus sampling's mass (1: off)."),
    top_k: int = typer.Option(0, help="Numeric rows: sample among the k likeliest tokens (0: off)."),
    max_new_tokens: int = typer.Option(7, help="Numeric rows: tokens per sample, at most (cut at the first newline)."),
    sampling_seed: int = typer.Option(0, help="Numeric rows: the seed every sample's draws come from, with its row "
                                              "and number."),
) -> None:
    """Score every row of DATA with MODEL and write per-example results; resumes an interrupted run.

    Numeric rows (prompt, true_answer, anchor: the prize's anchoring tasks) are answered by sampled
    estimates instead, with the prize pipeline's anchoring loss per triple."""
    started = time.perf_counter()
    if model is None:
        model = "tiny-opt"
        _warn("no --model given: scoring with tiny-opt, a tiny OPT with random weights (its scores mean nothing); "
              "pass --model for a real one")
    try:
        chains, budgets = _chain_settings(cot, reasoning_tokens, reasoning_cue, answer_cue, reasoning_stop)
        if budgets is not None and len(budgets) > 1:
            raise ValueError(f"--reasoning-tokens {reasoning_tokens}: score takes one budget; evaluate and sweep "
                             "take several")
        scorer = api.Scorer(model, dtype, device, max_tokens_per_pack=max_tokens_per_pack, kernels=kernels,
                            attention=attention, offload=offload, gpu_memory=gpu_memory, too_long=too_long,
                            chat_template=chat_template, mutual_info=mutual_info, path=path, cot=chains,
                            sampling=NumericSampling(samples, temperature, max_new_tokens, top_p, top_k, sampling_seed),
                            warn=_warn, log=_say)
        results = scorer.score(data, out_path or _default_out(data), overwrite=overwrite, task_type=task_type,
                               split=split)
    except USER_ERRORS as exc:
        _fail(_one_line(exc))
    except api.Interrupted as exc:
        _fail(str(exc), 130)
    except KeyboardInterrupt:
        _fail("interrupted before scoring began; nothing was written", 130)
    if scorer.group.is_main:
        _print_summary(results, time.perf_counter() - started)


SEED_TASKS = "triviamod,gambling,decoy,expert,pretend"


@app.command()
def evaluate(
    tasks: str = typer.Option(SEED_TASKS, help="Comma-separated generator names (see: invscale generate --list), "
                                               "or all of them: all."),
    n: int = typer.Option(300, "--n", "--rows", min=1, help="Items per task (and per seed); --rows under torchrun, "
                                                               "whose parser takes --n for its own options."),
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
    path: str = typer.Option("auto", help=PATH_HELP),
    cot: bool = typer.Option(False, "--cot", help=COT_HELP),
    reasoning_tokens: Optional[str] = typer.Option(None, help="With --cot, the chain's token budget, or several "
                                                               "(0,32,128: each its own row; 0 is the plain task; "
                                                               "default 256)."),
    reasoning_cue: str = typer.Option(REASONING_CUE, help=REASONING_CUE_HELP),
    answer_cue: str = typer.Option(ANSWER_CUE, help=ANSWER_CUE_HELP),
    reasoning_stop: Optional[list[str]] = typer.Option(None, help=REASONING_STOP_HELP),
) -> None:
    """Generate each task, score it with MODEL and print accuracy and loss per task against chance.

    Each task's rows go to OUT/NAME.jsonl and its results to OUT/NAME.results.jsonl (resumable, like
    score), NAME being the task, with -Kshot when --shots is given and -seedS with several seeds;
    the table (one row per task and shot count, with 95% intervals) is also OUT/summary.csv."""
    try:
        seed_list = _counts("--seeds", seeds)
        shot_list = _counts("--shots", shots) if shots is not None else [None]
        chains, budgets = _chain_settings(cot, reasoning_tokens, reasoning_cue, answer_cue, reasoning_stop)
        from invscale.generators import REGISTRY

        names = list(REGISTRY) if tasks == "all" else tasks.split(",")
        scorer = api.Scorer(model, dtype, device, kernels=kernels, too_long=too_long, chat_template=chat_template,
                            path=path, warn=_warn, log=_say)
        evaluation = api.evaluate(names, model, n, seed_list, shot_list, out_dir, overwrite=overwrite,
                                  scorer=scorer, cot=chains, reasoning_tokens=budgets)
    except USER_ERRORS as exc:
        _fail(_one_line(exc))
    except api.Interrupted as exc:
        _fail(str(exc), 130)
    if not scorer.group.is_main:
        return
    seeds_title = f"seed {seed_list[0]}" if len(seed_list) == 1 else f"seeds {','.join(map(str, seed_list))}"
    table = Table(title=f"{model} · {n} items per task{' and seed' if len(seed_list) > 1 else ''}, {seeds_title}",
                  caption="95% bootstrap intervals" + (" across seeds and items" if len(seed_list) > 1 else ""))
    with_shots, with_chains = shots is not None, evaluation.reasoning_tokens is not None
    chain_columns = ("reasoning tokens", "mean chain", "by text") if with_chains else ()
    for column in ("task", *(("shots",) if with_shots else ()), *chain_columns[:1], "n", "accuracy (95%)", "chance",
                   "mean loss (95%)", "chance loss", *chain_columns[1:], "seconds"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for row in evaluation.rows:
        chained = "mean_chain_tokens" in row
        table.add_row(row["task"], *((str(row["shots"]),) if with_shots else ()),
                      *((str(row["reasoning_tokens"]),) if with_chains else ()), str(row["n"]),
                      _interval(row, "accuracy", "accuracy_low", "accuracy_high"), _number(row, "chance_accuracy"),
                      _interval(row, "mean_loss", "loss_low", "loss_high"), _number(row, "chance_loss"),
                      *((f"{row['mean_chain_tokens']:.1f}" if chained else "-",
                         f"{row['accuracy_by_text']:.3f}" if chained else "-") if with_chains else ()),
                      f"{row['seconds']:.1f}")
    _print_table(table)
    out.print(f"results and summary.csv in {out_dir}")


@app.command()
def sweep(
    data: list[str] = typer.Argument(..., help="Prize-format dataset files (their file names name the tasks), or "
                                               "generator names (see: invscale generate --list)."),
    family: Optional[str] = typer.Option(None, help=f"A model family: {family_help()}."),
    models: Optional[str] = typer.Option(None, help="Comma-separated models (hub ids, directories, .gguf, built-ins; "
                                                    "MODEL@REVISION for a hub checkpoint, a folder named step-N for "
                                                    "a local one)."),
    revisions: Optional[str] = typer.Option(None, help="Comma-separated hub revisions (e.g. step1000,step143000): "
                                                       "every model at each, for verdicts through training."),
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
    n: int = typer.Option(300, "--n", "--rows", min=1, help="Generator names: rows per task, shot count and seed "
                                                               "(--rows under torchrun)."),
    seeds: str = typer.Option("0", "--seeds", help="Generator names: seed, or several (0,1,2), pooled in the report "
                                                   "with intervals across seeds and items."),
    shots: Optional[str] = typer.Option(None, help="Generator names: worked examples in the shared preface, one "
                                                   "count or several (0,3), each its own task in the report."),
    path: str = typer.Option("auto", help=PATH_HELP),
    cot: bool = typer.Option(False, "--cot", help=COT_HELP),
    reasoning_tokens: Optional[str] = typer.Option(None, help="With --cot, the chain's token budget, or several "
                                                               "(0,32,128: each a task variant, with a verdict across "
                                                               "them per model; 0 is the plain task; default 256)."),
    reasoning_cue: str = typer.Option(REASONING_CUE, help=REASONING_CUE_HELP),
    answer_cue: str = typer.Option(ANSWER_CUE, help=ANSWER_CUE_HELP),
    reasoning_stop: Optional[list[str]] = typer.Option(None, help=REASONING_STOP_HELP),
) -> None:
    """Score every DATA file (or generated task) on every model, then report tables, plots and scaling
    verdicts.

    One model is loaded at a time; finished (dataset, model, dtype) pairs are not redone."""
    try:
        chains, budgets = _chain_settings(cot, reasoning_tokens, reasoning_cue, answer_cue, reasoning_stop)
        study = api.sweep(data, models.split(",") if models is not None else None, out_dir, family,
                          revisions=[r for r in revisions.split(",") if r] if revisions else None, dtype=dtype,
                          device=device, kernels=kernels, max_tokens_per_pack=max_tokens_per_pack, offload=offload,
                          gpu_memory=gpu_memory, chat_template=chat_template, n=n, seeds=_counts("--seeds", seeds),
                          shots=_counts("--shots", shots) if shots is not None else [None], x_axis=x_axis, path=path,
                          cot=chains, reasoning_tokens=budgets, log=_say)
    except USER_ERRORS as exc:
        _fail(_one_line(exc))
    except api.Interrupted as exc:
        _fail(str(exc), 130)
    if not study.manifest["models"]:  # a process other than the main one under torchrun
        return
    _print_report(study)
    if study.unfinished:
        chosen = len(study.manifest["models"])
        err.print(f"{len(study.unfinished)} of {chosen} models did not finish every dataset "
                  f"({', '.join(m['name'] for m in study.unfinished)}); run the same command again to retry",
                  soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run folder written by invscale sweep."),
           x_axis: str = typer.Option("params", help=X_AXIS_HELP),
           compare_models: Optional[str] = typer.Option(None, "--compare", help="Two models, FIRST,SECOND: also "
                                                                                "their paired comparison (as compare).")
           ) -> None:
    """Re-render a sweep's summary table, plots and verdicts from its saved results."""
    try:
        _print_report(api.report(run_dir, x_axis))
        if compare_models is not None:
            pair = compare_models.split(",")
            if len(pair) != 2:
                raise ValueError(f"--compare {compare_models}: name two models, FIRST,SECOND")
            _print_comparison(api.compare(run_dir, *pair), run_dir)
    except ValueError as exc:
        _fail(_one_line(exc))


@app.command()
def compare(run_dir: Path = typer.Argument(..., help="A run folder written by invscale sweep."),
            first: str = typer.Argument(..., help="A model of the run (its name, or a part only it has)."),
            second: str = typer.Argument(..., help="Another model of the run.")) -> None:
    """Compare two models of a sweep on the same examples, task by task.

    Per task: the paired differences in accuracy and mean loss (SECOND minus FIRST) with 95%
    bootstrap intervals, how many examples only one of them gets right, and McNemar's exact test,
    Holm-corrected over the tasks."""
    try:
        _print_comparison(api.compare(run_dir, first, second), run_dir)
    except ValueError as exc:
        _fail(_one_line(exc))


def _print_comparison(comparison: api.Comparison, run_dir: Path) -> None:
    if not comparison.tasks:
        raise ValueError(f"{comparison.first} and {comparison.second} have no finished task in common in {run_dir}")
    table = Table(title=f"{comparison.second} − {comparison.first} · {run_dir}",
                  caption=f"paired 95% bootstrap intervals; McNemar's exact test, {comparison.correction}-corrected "
                          f"over {sum(t.mcnemar_p is not None for t in comparison.tasks)} tasks")
    for column in ("task", "n", "accuracy", "Δ accuracy (95%)", "Δ mean loss (95%)", "only first / second right",
                   "McNemar p", "corrected p"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task in comparison.tasks:
        paired = task.mcnemar_p is not None
        table.add_row(task.task, str(task.n),
                      f"{task.accuracy_first:.3f} → {task.accuracy_second:.3f}" if paired else "—",
                      f"{task.accuracy_difference:+.3f} ({task.accuracy_low:+.3f} to {task.accuracy_high:+.3f})"
                      if paired else "—",
                      f"{task.loss_difference:+.3f} ({task.loss_low:+.3f} to {task.loss_high:+.3f})",
                      f"{task.only_first_correct} / {task.only_second_correct}" if paired else "—",
                      f"{task.mcnemar_p:.3g}" if paired else "—", f"{task.mcnemar_p_holm:.3g}" if paired else "—")
    _print_table(table)
    out.print(f"written to {comparison.path}")


def _print_report(study: api.Report) -> None:
    table = Table(title=f"sweep {study.run_dir}")
    for column in ("task", "model", "params", "n", "accuracy (95% CI)", "mean loss (95% CI)"):
        table.add_column(column, justify="left" if column in ("task", "model") else "right")
    for row in study.summary:
        accuracy = _interval(row, "accuracy", "accuracy_low", "accuracy_high") if "accuracy" in row else "—"
        table.add_row(row["task"], row["model"], f"{row['params'] / 1e6:,.1f}M", str(row["n"]), accuracy,
                      _interval(row, "mean_loss", "loss_low", "loss_high"))
    _print_table(table)
    for model in study.unfinished:
        out.print(f"{model['name']}: {model['status']}: {model.get('reason', '')}", soft_wrap=True)
    for task, verdict in study.verdicts.items():
        out.print(Text.assemble((task, "bold"), f": {verdict.kind} — {verdict.reason}"), soft_wrap=True)
    for task, by_model in study.training_verdicts.items():
        for name, verdict in by_model.items():
            out.print(Text.assemble((f"{task} · {name} through training", "bold"), f": {verdict.kind} — "
                                    f"{verdict.reason}"), soft_wrap=True)
    for task, by_model in study.budget_verdicts.items():
        for name, verdict in by_model.items():
            out.print(Text.assemble((f"{task} · {name} across reasoning budgets", "bold"), f": {verdict.kind} — "
                                    f"{verdict.reason}"), soft_wrap=True)
    out.print(f"summary.csv, verdicts.json and plots/ in {study.run_dir}")


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
        figures = api.bench(shape, model, data, items=items, prompt_len=prompt_len, options=options,
                            option_len=option_len, preface_len=preface_len, dtype=dtype, device=device,
                            methods=methods.split(",") if methods is not None else None,
                            max_tokens_per_pack=max_tokens_per_pack, repeats=repeats, log=_say)
    except (*USER_ERRORS, BenchmarkMismatch) as exc:
        _fail(_one_line(exc))
    except torch.cuda.OutOfMemoryError:
        _fail("out of GPU memory: try a smaller --shape or workload, or fewer --methods")
    except KeyboardInterrupt:
        _fail("interrupted: the benchmark stopped before its figures were complete; nothing was written", 130)
    _print_table(figures_table(figures, f"invscale bench · {figures['model']}"))
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


@app.command("lm-eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
def lm_eval_command(ctx: typer.Context) -> None:
    """lm-evaluation-harness's command line with --model invscale available; takes lm_eval's own
    arguments (see invscale lm-eval --help)."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        _fail("lm-evaluation-harness is not installed; install it with: pip install -e '.[lm-eval]'")
    from invscale.integrations.lm_eval_command import main as lm_eval_main

    try:
        lm_eval_main(ctx.args)
    except (KeyboardInterrupt, SystemExit, typer.Exit):
        raise
    except Exception as exc:  # lm-eval's own errors and ours, as one line
        _fail(f"lm-eval: {_one_line(exc)}")


def _bench_host(model: Optional[str], data: Optional[str], max_tokens_per_pack: Optional[int],
                json_path: Optional[Path]) -> None:
    import json

    try:
        figures = api.bench_host(model, data, max_tokens_per_pack)
    except USER_ERRORS as exc:
        _fail(_one_line(exc))
    table = Table(title=f"invscale bench --host-only · {model} · {figures['data']}", show_header=False)
    rows = [("rows", f"{figures['rows']:,}"), ("naive tokens", f"{figures['naive_tokens']:,}"),
            ("unique tokens", f"{figures['unique_tokens']:,} ({figures['packs']} packs, preface "
                              f"{figures['preface_tokens']})"),
            ("fewest possible", f"{figures['fewest_tokens']:,}" if figures["fewest_tokens"] is not None else "—"),
            ("lm-eval's HF backend", f"{figures['lm_eval_hf_tokens']:,}"),
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


def _print_summary(results: api.Results, seconds: float) -> None:
    summary, stats, stream_times = results.summary, results.stats, results.stream_times
    table = Table(title=f"{results.dataset.name} · {results.model}", show_header=False)
    table.add_row("examples", str(summary["n"]))
    if "skipped" in summary:
        table.add_row("skipped", f"{summary['skipped']} (too long for the model)")
    if "truncated" in summary:
        table.add_row("truncated", f"{summary['truncated']} (oldest prompt tokens dropped)")
    if "accuracy" in summary:
        table.add_row("accuracy", f"{summary['accuracy']:.4f} (95% {summary['accuracy_low']:.4f}–"
                                  f"{summary['accuracy_high']:.4f})")
    for name in ("acc_norm", "acc_bytes", "acc_mutual_info", "brier_score", "mean_token_logprob"):
        if name in summary:
            table.add_row(name, f"{summary[name]:.4f}")
    if "mean_loss" in summary:
        table.add_row("mean loss", f"{summary['mean_loss']:.4f} (95% {summary['loss_low']:.4f}–{summary['loss_high']:.4f})")
    if "valid_samples" in summary:
        sampling = results.scorer.sampling
        table.add_row("estimates", f"{sampling.samples if sampling.temperature else 1} sample(s) per row at temperature "
                                   f"{sampling.temperature:g}, at most {sampling.max_new_tokens} tokens, cut at the "
                                   f"first newline; {summary['valid_samples']:.1%} parse as numbers")
        if "mean_loss" in summary:
            table.add_row("anchoring loss", f"{summary['mean_loss']:.4f} (mean over triples of (high/control - 1)^2 + "
                                            f"(low/control - 1)^2)")
    if summary.get("no_loss"):
        table.add_row("no loss", f"{summary['no_loss']} rows (an estimate with no valid sample, or a control of 0)")
    if "mean_chain_tokens" in summary:
        stops = Counter(record["chain_stop"] for record in results.records if "chain_stop" in record)
        budget = results.scorer.cot.reasoning_tokens
        table.add_row("chains", f"mean {summary['mean_chain_tokens']:.1f} tokens; ended by "
                                f"{', '.join(f'{why} {count}' for why, count in sorted(stops.items()))}; a chain "
                                f"reaching {budget} tokens is cut there, then the answer cue follows")
        table.add_row("answer cue", f"written by the model in {summary['wrote_cue']:.1%} of chains (cut there and "
                                    "appended as the classes are scored)")
        table.add_row("accuracy by text", f"{summary['accuracy_by_text']:.4f} (the class the chain's text names "
                                          "after the cue; none named counts wrong)")
    table.add_row("wall time", f"{seconds:.1f} s")
    on_cache = results.path_taken is not None and results.path_taken.name == "cache"
    if results.path_taken is not None:
        table.add_row("path", results.path_taken.describe())
    if stats is not None and stats.items and stats.naive_tokens:
        ratio = stats.naive_tokens / max(stats.unique_tokens, 1)
        table.add_row("tokens computed", f"{stats.unique_tokens:,} unique vs {stats.naive_tokens:,} naive "
                                         f"({ratio:.1f}x fewer; preface {stats.preface_tokens}, {stats.packs} "
                                         f"{'contexts' if on_cache else 'packs'})")
        fewest = f"fewest possible {stats.fewest_tokens:,}; " if stats.fewest_tokens is not None else ""
        table.add_row("compared", f"{fewest}lm-eval's HF backend would compute {stats.hf_tokens:,}")
        if stats.stack is not None and stats.stack.refused:
            table.add_row("prefix stack", f"{stats.stack.refused} shared prefixes ({stats.stack.refused_tokens:,} "
                                          f"tokens) past its key-value budget of {stats.stack.budget_tokens:,} tokens "
                                          f"were computed in each of their packs")
    if stream_times is not None:
        table.add_row("streamed layers", f"{stream_times.layers} layer passes: {stream_times.load:.1f} s reading "
                                         f"weights, {stream_times.compute:.1f} s computing")
    table.add_row("results", str(results.path))
    _print_table(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
