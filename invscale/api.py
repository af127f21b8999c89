"""invscale from Python: what every ``invscale`` command runs, for notebooks and scripts.

    import invscale

    scorer = invscale.Scorer("tiny-opt")                   # loads the model on first use, once
    results = scorer.score("decoy.jsonl", out="decoy.results.jsonl")   # resumable, as the CLI's
    results.summary["accuracy"], results.to_pandas()
    scorer.options(["The capital of France is"], [[" Paris", " Rome"]])  # per-option log-probs

    table = invscale.evaluate(["decoy", "gambling"], "smollm2-135m", n=100, seeds=[0, 1])
    study = invscale.sweep(["decoy"], models=["tiny-opt", "smollm2-135m"], out="runs/one")
    invscale.report("runs/one").verdicts
    invscale.compare("runs/one", "tiny-opt", "smollm2-135m").tasks   # paired tests, model against model

The command line only parses arguments and prints what these return, so a script and a shell
write the same files byte for byte. Errors are raised with one-line messages: ``DataError`` (bad
input, naming file, row and field), ``ModelLoadError``, ``ResultsError`` (a results file that
cannot be written or resumed), ``KernelUnavailable``, ``ValueError`` (a bad option);
:class:`Interrupted` and :class:`OutOfMemory` say how many results were kept where.
"""

from __future__ import annotations

import csv
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from rich.console import Console

from invscale.chain_of_thought import ChainOfThought, check_chain_dataset
from invscale.data import Dataset, TaskType, read_dataset, validate_records, with_content_hash, write_dataset
from invscale.models import LoadedModel, NotLocal, fingerprint, load_for_scoring, load_tokenizer, parse_memory, resolve_device
from invscale.jobs import Writing, make_job
from invscale.numeric import NumericSampling
from invscale.progress import ProgressReport
from invscale.results import FollowerStore, check_out_path, open_results, results_store
from invscale.scoring import distributed
from invscale.scoring.chat import apply_chat_template, require_chat_template
from invscale.scoring.metrics import TOO_LONG_COLUMNS, chance_levels, seed_summary
from invscale.scoring.paths import ScoringPath, check_path
from invscale.scoring.scorer import ScoreStats, ScoringJob, check_too_long, unconditional_logprobs

_stderr = Console(stderr=True, markup=False, highlight=False)

EVALUATE_COLUMNS = ["task", "shots", "reasoning_tokens", "seeds", "n", "skipped", "accuracy", "accuracy_low",
                    "accuracy_high", "acc_norm", "acc_bytes", "brier_score", "chance_accuracy", "mean_loss", "loss_low",
                    "loss_high", "chance_loss", "mean_chain_tokens", "wrote_cue", "accuracy_by_text", "seconds"]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C; its message says how many results were kept, and where."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message says what was kept and what to lower."""


def _warn(text: str) -> None:
    _stderr.print(f"warning: {text}", soft_wrap=True)


def _say(text: str) -> None:
    _stderr.print(text, soft_wrap=True)


@dataclass
class Results:
    """The per-example results of one dataset (``records``, by row index) and their :attr:`summary`;
    ``path`` is the results file when they were written to one."""

    records: list[dict]
    dataset: Dataset
    model: str
    path: Path | None = None
    stats: ScoreStats | None = None
    seconds: float = 0.0
    stream_times: Any = None
    scorer: "Scorer | None" = field(default=None, repr=False)
    path_taken: ScoringPath | None = None  # the path the rows scored now took (None: all were scored before)

    @cached_property
    def summary(self) -> dict:
        """n, mean loss, accuracy, acc_norm, acc_bytes and brier_score (where the task type has them),
        rows skipped or truncated, and 95% bootstrap intervals of accuracy and mean loss (``*_low``,
        ``*_high``)."""
        return seed_summary([self.records])

    def to_pandas(self):
        """The records as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("Results.to_pandas needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.records)

    def save(self, path: str | Path) -> Path:
        """Write the records to ``path`` (``.jsonl`` or ``.csv``) as the resumable results store the
        command line writes, provenance included; ResultsError if ``path`` holds other results."""
        path, scorer = Path(path), self.scorer
        with open_results(path, self.dataset, scorer.identity, scorer.dtype, too_long=scorer.too_long,
                          chat_template=scorer.chat_template, mutual_info=scorer.mutual_info,
                          chains=scorer.writing.chains(), sampling=scorer.writing.sampling_of(self.dataset)) as store:
            store.start()
            store.append(self.records)
            store.finalize(store.existing + self.records, self.seconds)
        return path


def as_dataset(data: Any, task_type: TaskType | str | None = None, split: str | None = None) -> Dataset:
    """``data`` as a validated :class:`Dataset`: a path (a CSV or JSONL file, ``"-"`` for standard
    input, a Hugging Face dataset folder), a Hugging Face hub id (``split`` choosing among its
    splits), a list of records (dicts with the prize columns), a pandas DataFrame, or a Dataset;
    DataError otherwise."""
    if isinstance(data, Dataset):
        return data if data.content_sha256 else with_content_hash(data)
    if isinstance(data, (str, Path)):
        return read_dataset(data, task_type, split)
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        records, columns = data.to_dict("records"), [str(column) for column in data.columns]
    elif isinstance(data, Sequence) and all(isinstance(record, dict) for record in data):
        records = list(data)
        columns = list(dict.fromkeys(key for record in records for key in record))
    else:
        raise TypeError(f"data: give a path, a list of dicts, a pandas DataFrame or a Dataset, not {type(data).__name__}")
    return with_content_hash(validate_records("<records>", records, columns, task_type))


class Scorer:
    """One model, loaded on first use and kept, scoring datasets exactly as ``invscale score`` does.

    ``model``: a hub id, a local checkpoint directory, a ``.gguf`` file, ``tiny-opt`` or
    ``smollm2-135m``. The options are the command line's: ``max_tokens_per_pack``, ``kernels``
    (auto, torch, triton), ``attention`` (the tree attention backend), ``offload`` (none, disk,
    cpu, auto) with ``gpu_memory`` (e.g. ``"20GiB"``), ``too_long`` (error, skip, truncate-left),
    ``path`` (trie, cache or auto: which exact path computes the log-probs; see
    :mod:`invscale.scoring.paths`),
    ``chat_template`` and ``mutual_info`` (lm-eval's acc_mutual_info for classification rows: one
    more trie run, of each distinct class with no prompt). ``cot``: a chain of thought the model
    writes before the classes are scored (see :mod:`invscale.chain_of_thought`; a budget of 0 tokens
    is the plain task). ``sampling``: how numeric rows' estimates are sampled (see
    :mod:`invscale.numeric`; the prize pipeline's settings by default). ``progress`` shows a bar (a line now and then when standard error is not a
    terminal); ``warn`` and ``log`` receive the warnings and notes a run has to say.
    """

    def __init__(self, model: str, dtype: str = "float32", device: str = "auto", *,
                 max_tokens_per_pack: int | None = None, kernels: str = "auto", attention: str = "auto",
                 offload: str = "auto", gpu_memory: str | None = None, too_long: str = "error",
                 chat_template: bool = False, mutual_info: bool = False, progress: bool = True, path: str = "auto",
                 cot: ChainOfThought | None = None, sampling: NumericSampling | None = None,
                 warn: Callable[[str], None] = _warn, log: Callable[[str], None] = _say):
        check_too_long(too_long)
        self.path = check_path(path)
        self.memory_budget = parse_memory(gpu_memory) if gpu_memory is not None else None
        resolve_device(device)
        if chat_template:  # from the tokenizer alone, before any weights are read
            require_chat_template(load_tokenizer(model)[0])
        self.model_name, self.dtype, self.device = model, dtype, device
        self.max_tokens_per_pack, self.kernels, self.attention, self.offload = max_tokens_per_pack, kernels, attention, offload
        self.too_long, self.chat_template, self.progress, self.warn, self.log = too_long, chat_template, progress, warn, log
        self.mutual_info, self.cot, self.sampling = mutual_info, cot, sampling or NumericSampling()
        self.group = distributed.current()
        self._loaded: LoadedModel | None = None
        self._identity: dict | None = None

    @property
    def writing(self) -> Writing:
        """What the model writes before its results are read (chains of thought, numeric samples)."""
        return Writing(self.cot, self.sampling)

    @property
    def loaded(self) -> LoadedModel:
        """The model and tokenizer, loaded now if not yet."""
        return self._load()

    def _load(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_for_scoring(self.model_name, dtype=self.dtype, device=self.device, offload=self.offload,
                                            memory_budget=self.memory_budget)
        return self._loaded

    @property
    def identity(self) -> dict:
        """The model's content fingerprints (read from its files; a hub id not in the cache yet is
        loaded first)."""
        if self._identity is None:
            try:
                self._identity = fingerprint(self.model_name)
            except NotLocal:
                self._load()  # a hub id is fingerprinted from the cache it is downloaded into
                self._identity = fingerprint(self.model_name)
        return self._identity

    def score(self, data: Any, out: str | Path | None = None, *, overwrite: bool = False,
              task_type: TaskType | str | None = None, split: str | None = None) -> Results:
        """Score every row of ``data`` (see :func:`as_dataset`). With ``out`` (``.jsonl`` or ``.csv``)
        results are written as they finish and an interrupted run resumes where it stopped; rows
        already there are not scored again."""
        started = time.perf_counter()
        dataset = as_dataset(data, task_type, split)
        for warning in dataset.warnings if self.group.is_main else ():
            self.warn(warning)
        if out is not None:
            check_out_path(Path(out), str(data) if isinstance(data, (str, Path)) else None)
        return self._score(dataset, Path(out) if out is not None else None, overwrite, started)

    def _score(self, dataset: Dataset, out: Path | None, overwrite: bool, started: float,
               before_start: Callable[[], None] = lambda: None, label: str | None = None) -> Results:
        """Score ``dataset`` into the store at ``out`` (none: results kept in memory only);
        ``before_start`` runs once the store has accepted the run, before it is written; with a
        ``label``, a line names the work when there is some."""
        writing = self.writing
        opened = nullcontext(FollowerStore(None, set())) if out is None else results_store(self.group, lambda: open_results(
            out, dataset, self.identity, self.dtype, overwrite=overwrite, too_long=self.too_long,
            chat_template=self.chat_template, mutual_info=self.mutual_info, chains=writing.chains(),
            sampling=writing.sampling_of(dataset)), out)
        writing.check(dataset)
        if self.mutual_info and dataset.task_type is not TaskType.classification:
            raise ValueError(f"--mutual-info: {dataset.name} is a {dataset.task_type.value} task; acc_mutual_info "
                             "is for classification rows")
        with opened as store:
            for warning in store.warnings:
                self.warn(warning)
            if self.group.is_main:
                before_start()
            done, job = store.done_indexes(), None
            if len(done) < len(dataset.rows):
                loaded = self.loaded
                scored = apply_chat_template(dataset, loaded.tokenizer) if self.chat_template else dataset
                unconditional = (unconditional_logprobs(loaded.model, loaded.tokenizer,
                                                        (text for row in dataset.rows for text in row.classes),
                                                        self.max_tokens_per_pack, self.attention, self.kernels,
                                                        self.path)
                                 if self.mutual_info else None)
                job = make_job(loaded.model, loaded.tokenizer, scored, writing, skip_indexes=done,
                               streamed=loaded.streamed, max_tokens_per_pack=self.max_tokens_per_pack,
                               backend=self.attention, kernels=self.kernels, memory_budget=self.memory_budget,
                               group=self.group, too_long=self.too_long, unconditional=unconditional, path=self.path)
                store.notes["scoring_path"] = job.path.describe()
                if self.group.is_main:
                    if label is not None:
                        self.log(f"{label}: scoring {job.stats.items} items")
                    if job.too_long_rows:
                        done_with = "skipped" if self.too_long == "skip" else "scored with their oldest prompt tokens dropped"
                        self.warn(f"{job.too_long_rows} row(s) longer than the model takes are {done_with} (--too-long "
                                  f"{self.too_long}; see the results' {TOO_LONG_COLUMNS[self.too_long][0]} column)")
            store.start()
            if store.existing and self.group.is_main:
                self.log(f"resuming: {len(store.existing)} of {len(dataset.rows)} rows already in {out}")
            records = store.existing + (_run_job(job, store, self.progress) if job is not None else [])
            seconds = store.finalize(records, time.perf_counter() - started if job is not None else 0.0)
        records = sorted(records, key=lambda record: record["index"])
        return Results(records, dataset, self.model_name, out, job.stats if job else None, seconds,
                       job.stream_times if job else None, self, job.path if job else None)

    def options(self, prompts: Sequence[str], options: Sequence[Sequence[str]] | Sequence[str]) -> list[list[float]]:
        """The log-probability the model gives each option after its prompt (summed over the
        option's tokens, computed exactly as :meth:`score` computes classes): ``options`` is one
        list per prompt, or one list every prompt shares. The classify-with-an-LM use: the
        highest option is the model's answer."""
        if options and all(isinstance(option, str) for option in options):
            options = [list(options)] * len(prompts)
        if len(options) != len(prompts):
            raise ValueError(f"options: {len(options)} lists for {len(prompts)} prompts; give one per prompt or one shared")
        records = [{"prompt": prompt, "completion": option} for prompt, choices in zip(prompts, options) for option in choices]
        results = self._score(as_dataset(records, TaskType.sequence_prob), None, False, time.perf_counter()).records
        logprobs, position = [], 0
        for choices in options:
            logprobs.append([results[position + number]["logprob"] for number in range(len(choices))])
            position += len(choices)
        return logprobs


def _run_job(job: ScoringJob, store, progress: bool = True) -> list[dict]:
    """Run ``job``, appending each pack's results to ``store`` as it finishes; the new results.
    Under torchrun only the main process shows progress and keeps results."""
    if not job.group.is_main:
        for _ in job.results():
            pass
        return []
    new_results: list[dict] = []
    started, tokens = time.perf_counter(), 0
    try:
        with ProgressReport(_stderr, "scoring", job.stats.items, enabled=progress) as report:
            if job.streamed is not None and job.path.name == "trie":  # the cache path reads layers per forward
                report.add_counter("layers", len(job.streamed.layers) * len(job.groups), "streamed")
                job.on_layer = lambda index, count: report.count("layers")
            pending: list[dict] = []

            def on_pack(rows_finished: int, pack_tokens: int) -> None:
                nonlocal tokens
                tokens += pack_tokens
                store.append(pending)
                new_results.extend(pending)
                pending.clear()
                report.advance(rows_finished, f"{tokens / max(time.perf_counter() - started, 1e-9):,.0f} tokens/s")

            for result in job.results(on_pack=on_pack):
                pending.append(result)
    except KeyboardInterrupt:
        kept = len(store.existing) + len(new_results)
        raise Interrupted(f"interrupted: {kept} results kept in {store.path}; run the same command again to resume"
                          if store.path else "interrupted") from None
    except torch.cuda.OutOfMemoryError:
        kept = len(store.existing) + len(new_results)
        raise OutOfMemory(f"out of GPU memory on packs of up to {job.max_tokens_per_pack} tokens; {kept} results are "
                          f"kept in {store.path}: lower --max-tokens-per-pack and run the same command again") from None
    return new_results


def generate(task: str, n: int = 100, seed: int = 0, shots: int | None = None,
             on_drawn: Callable[[int], None] | None = None, cot: ChainOfThought | None = None) -> Dataset:
    """``n`` rows of the generated task ``task`` (see ``invscale generate --list``) for ``seed``,
    with ``shots`` worked examples in the shared preface (the task's default if None), each showing
    its written chain of thought with ``cot``'s cues when ``cot`` is given; the generator's notes
    (e.g. too few distinct items) are the dataset's ``warnings``."""
    from invscale.generators import generate as generate_task

    cues = (cot.reasoning_cue, cot.answer_cue) if cot is not None else None
    dataset, generated = generate_task(task, n, seed, shots, on_drawn=on_drawn, cues=cues)
    return replace(with_content_hash(dataset), warnings=[*dataset.warnings, *generated.notes])


@dataclass
class Evaluation:
    """What :func:`evaluate` found: one row per task and shot count (``rows``: n, accuracy and mean
    loss with 95% intervals, chance levels, seconds), and where it wrote everything."""

    rows: list[dict]
    out: Path
    model: str
    n: int
    seeds: list[int]
    shots: list[int | None]
    reasoning_tokens: list[int] | None = None  # the chain-of-thought budgets (None: no chains)

    @property
    def summary_csv(self) -> Path:
        """The rows as a CSV file."""
        return self.out / "summary.csv"


def evaluate(tasks: Iterable[str], model: str = "smollm2-135m", n: int = 300, seeds: Sequence[int] = (0,),
             shots: Sequence[int | None] = (None,), out: str | Path = "invscale-eval", *, overwrite: bool = False,
             scorer: Scorer | None = None, cot: ChainOfThought | None = None,
             reasoning_tokens: Sequence[int] | None = None, **options) -> Evaluation:
    """Generate each task (``n`` rows per seed and shot count), score it with ``model`` (or with
    ``scorer``, to reuse a loaded model; ``options`` as for :class:`Scorer`) and summarise it with
    intervals across seeds and items. With ``cot``, the model writes a chain of thought before the
    classes are scored, within each budget of ``reasoning_tokens`` (default: ``cot``'s own), each
    budget a variant (0: the plain task), and the worked examples show their written chains (so
    ``shots=[K]`` is K-shot chain of thought). Each variant's rows go to ``out/NAME.jsonl`` and its
    results to ``out/NAME.results.jsonl`` (resumable, as :meth:`Scorer.score`), NAME being the task,
    with ``-Kshot`` when shot counts are given, ``-seedS`` with several seeds and ``-cotN`` for a
    reasoning budget of N tokens; the rows also go to ``out/summary.csv``."""
    from invscale.generators import REGISTRY, variant_name

    tasks, seeds, shots, out = list(tasks), list(seeds), list(shots), Path(out)
    if not seeds or not shots or not tasks:
        raise ValueError("evaluate: give at least one task, seed and shot count")
    budgets: list[int | None] = _budgets(cot, reasoning_tokens) or [None]
    chains = {budget: None if budget is None else replace(cot, reasoning_tokens=budget) for budget in budgets}
    _check_tasks(tasks, n)  # before the scorer loads its model (it loads on first use)
    scorer = scorer or Scorer(model, **options)
    cells = [(task, shot_count, budget) for task in tasks for shot_count in shots for budget in budgets]
    for task, shot_count, budget in cells:  # every task name and shot count is checked before any is scored
        sample = generate(task, REGISTRY[task].rows_per_item, seeds[0], shot_count)
        if budget:
            check_chain_dataset(sample)
    out.mkdir(parents=True, exist_ok=True)
    rows, own_cot = [], scorer.cot
    try:
        for task, shot_count, budget in cells:
            per_seed = []
            scorer.cot = chains[budget]
            for seed in seeds:
                name = variant_name(task, shot_count, seed if len(seeds) > 1 else None, budget)
                dataset = generate(task, n, seed, shot_count, cot=chains[budget] if budget else None)
                results = scorer._score(dataset, out / f"{name}.results.jsonl", overwrite, time.perf_counter(),
                                        before_start=lambda: write_dataset(dataset, out / f"{name}.jsonl"), label=name)
                per_seed.append(results)
            rows.append({"task": task, "shots": "default" if shot_count is None else shot_count,
                         **({} if budget is None else {"reasoning_tokens": budget}),
                         "seeds": ",".join(map(str, seeds)), **seed_summary([r.records for r in per_seed]),
                         **chance_levels(per_seed[0].dataset), "seconds": sum(r.seconds for r in per_seed)})
    finally:
        scorer.cot = own_cot
    if scorer.group.is_main:
        with open(out / "summary.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=EVALUATE_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return Evaluation(rows, out, scorer.model_name, n, seeds, shots, None if cot is None else budgets)


def _check_tasks(tasks: Sequence[str], n: int) -> None:
    """ValueError in one line for a task that is not a generator's name, or whose rows come in
    groups (a numeric triple) that ``n`` rows would split."""
    from invscale.generators import REGISTRY

    unknown = [task for task in tasks if task not in REGISTRY]
    if unknown:
        raise ValueError(f"--tasks: unknown task {', '.join(unknown)}; see: invscale generate --list")
    for task in tasks:
        group = REGISTRY[task].rows_per_item
        if n % group:
            raise ValueError(f"{task}: --n {n}: its rows come in groups of {group}; give a multiple of {group}")


def _budgets(cot: ChainOfThought | None, reasoning_tokens: Sequence[int] | None) -> list[int] | None:
    """The reasoning budgets a run varies (``cot``'s own when none are listed; None without ``cot``);
    ValueError for budgets without ``cot``."""
    if cot is None:
        if reasoning_tokens is not None:
            raise ValueError("--reasoning-tokens: give --cot too (the budgets are of a chain of thought)")
        return None
    return list(reasoning_tokens or [cot.reasoning_tokens])


@dataclass
class Report:
    """A sweep's report: the summary rows (task × model), the verdict per task, and the run folder
    whose summary.csv, verdicts.json and plots (:attr:`plots`) hold them; ``manifest`` says what
    happened to each model."""

    summary: list[dict]
    verdicts: dict
    run_dir: Path
    manifest: dict
    training_verdicts: dict = field(default_factory=dict)  # {task: {model: verdict}} of models at several steps
    budget_verdicts: dict = field(default_factory=dict)  # {task: {model: verdict}} across reasoning budgets

    @property
    def plots(self) -> dict[str, Path]:
        """The plot of each task with results (and ``overview``, all tasks on one figure)."""
        tasks = [task for task, verdict in self.verdicts.items() if verdict.kind != "no results"]
        plots = {name: self.run_dir / "plots" / f"{name}.png" for name in [*tasks, *(["overview"] if tasks else [])]}
        return {**plots, **{f"{task}-training": self.run_dir / "plots" / f"{task}-training.png"
                            for task in self.training_verdicts},
                **{f"{task}-budget": self.run_dir / "plots" / f"{task}-budget.png" for task in self.budget_verdicts}}

    @property
    def unfinished(self) -> list[dict]:
        """The models that did not finish every dataset, with their status and reason."""
        return [model for model in self.manifest["models"] if model["status"] != "done"]


def report(run_dir: str | Path, x_axis: str = "params") -> Report:
    """Render a sweep's summary.csv, verdicts.json and plots from its saved results (``x_axis``:
    params, non-embedding or flops); ValueError when the folder holds no sweep."""
    from invscale.study.report import build_report
    from invscale.study.run import read_manifest

    run_dir = Path(run_dir)
    summary, verdicts, training, budgets = build_report(run_dir, x_axis)
    return Report(summary, verdicts, run_dir, read_manifest(run_dir), training, budgets)


@dataclass
class Comparison:
    """Model against model in a run folder: per task (:class:`invscale.study.compare.TaskComparison`)
    the paired differences (``second`` minus ``first``) with intervals, the flips each way and
    McNemar's exact p-value, Holm-corrected over the tasks; ``path`` is the CSV holding them."""

    first: str
    second: str
    tasks: list
    path: Path
    correction: str = "Holm"


def compare(run_dir: str | Path, first: str, second: str) -> Comparison:
    """Compare two models of a sweep's run folder on every task both have finished (a model named
    as in the manifest, or by a part of its name no other has); writes
    ``run_dir/compare/<first>--<second>.csv``. ValueError for a name that is not one model."""
    from invscale.study.compare import CORRECTION, compare_models, write_comparison

    run_dir = Path(run_dir)
    a, b, tasks = compare_models(run_dir, first, second)
    return Comparison(a["name"], b["name"], tasks, write_comparison(run_dir, a, b, tasks), CORRECTION)


def sweep(data: Iterable[str], models: Iterable[str] | None = None, out: str | Path | None = None,
          family: str | None = None, *, revisions: Sequence[str] | None = None,
          dtype: str = "float32", device: str = "auto", kernels: str = "auto", max_tokens_per_pack: int | None = None,
          offload: str = "auto", gpu_memory: str | None = None, chat_template: bool = False, n: int = 300,
          seeds: Sequence[int] = (0,), shots: Sequence[int | None] = (None,), x_axis: str = "params",
          path: str = "auto", cot: ChainOfThought | None = None, reasoning_tokens: Sequence[int] | None = None,
          progress: bool = True, log: Callable[[str], None] = _say) -> Report:
    """Score every dataset of ``data`` (files, or generator names expanded by ``n``, ``seeds`` and
    ``shots``) on every model (``models``, or the members of ``family``), one model in memory at a
    time, into the run folder ``out`` (resumable: finished pairs are never redone), then
    :func:`report` it. With ``revisions`` (e.g. ``["step1000", "step143000"]``) every model is swept
    at each of them (``model@revision``), for the report's through-training verdicts; checkpoint
    folders named by step (``ckpt/step-1000``) are taken as one model through training as they are.
    ``path`` is :class:`Scorer`'s. With ``cot``, every dataset is swept at each budget of
    ``reasoning_tokens`` (default ``cot``'s own; 0 is the plain prompt), scored after chains of
    thought the model writes (see :func:`evaluate`), and the report adds a verdict across budgets per
    model. A model that fails is recorded in the manifest and the sweep goes on."""
    from invscale.study.family import family_members, member_at
    from invscale.study.run import run_sweep
    from invscale.study.tasks import sweep_datasets

    if (family is None) == (models is None):
        raise ValueError("give exactly one of --family or --models")
    check_path(path)
    if out is None:
        raise ValueError("sweep: name the run folder, out=…")
    chosen = ([(member.model, member) for member in family_members(family)] if family
              else [(model, None) for model in models if model])
    if revisions:
        chosen = [(f"{name}@{revision}", member_at(member, family, revision) if member else None)
                  for name, member in chosen for revision in revisions]
    group = distributed.current()
    out = Path(out)
    budgets = _budgets(cot, reasoning_tokens)
    datasets, seed_groups = sweep_datasets(list(data), out, n, list(seeds), list(shots), budgets,
                                           (cot.reasoning_cue, cot.answer_cue) if cot is not None else None)
    for name, (_, dataset) in datasets.items():  # settings that cannot apply, before any model loads
        if (seed_groups.get(name) or {}).get("reasoning_tokens"):
            check_chain_dataset(dataset)
    budget = parse_memory(gpu_memory) if gpu_memory is not None else None
    run_sweep(out, datasets, chosen, dtype, device, kernels, max_tokens_per_pack,
              score=lambda job, store: _run_job(job, store, progress), log=log, offload=offload,
              memory_budget=budget, group=group, chat_template=chat_template, seed_groups=seed_groups, scoring_path=path,
              cot=cot)
    return report(out, x_axis) if group.is_main else Report([], {}, out, {"datasets": [], "models": []})


def bench(shape: str = "auto", model: str | None = None, data: str | None = None, *, items: int = 256,
          prompt_len: int = 256, options: int = 4, option_len: int = 6, preface_len: int = 0, dtype: str = "auto",
          device: str = "auto", methods: list[str] | None = None, max_tokens_per_pack: int | None = None,
          repeats: int = 1, log: Callable[[str], None] = _say) -> dict:
    """Time invscale against the plain HF ways (one forward per option; the prompt's keys and values
    reused) on one workload, after checking they agree: a random OPT of ``shape`` (auto: opt-125m on
    CUDA, tiny on CPU) on a synthetic workload, or ``model`` on ``data``. The figures of
    :func:`invscale.benchmark.run.run_benchmark`, ``model`` naming what was timed; BenchmarkMismatch
    if the methods disagree."""
    from invscale.benchmark.run import METHODS, available_methods, run_benchmark
    from invscale.benchmark.workload import OPT_SHAPES, WordIdTokenizer, build_opt, synthetic_dataset
    from invscale.kernels.launch import resolve_kernels
    from invscale.models import load_model, resolve_dtype

    target = resolve_device(device)
    dtype_name = ("bfloat16" if target.type == "cuda" else "float32") if dtype == "auto" else dtype
    chosen = available_methods(target) if methods is None else list(methods)
    unknown = [method for method in chosen if method not in METHODS]
    if unknown:
        raise ValueError(f"--methods {','.join(unknown)}: choose from {', '.join(METHODS)}")
    if "invscale-triton" in chosen:
        resolve_kernels("triton", target)
    if data is not None and model is None:
        raise ValueError("--data needs --model (the checkpoint whose tokenizer reads the file)")
    dataset = read_dataset(data) if data is not None else None
    if model is not None:
        loaded = load_model(model, dtype=dtype_name, device=str(target))
        lm, tokenizer, title = loaded.model, loaded.tokenizer, model
    else:
        shape = ("opt-125m" if target.type == "cuda" else "tiny") if shape == "auto" else shape
        if shape not in OPT_SHAPES:
            raise ValueError(f"--shape {shape}: choose one of {', '.join(OPT_SHAPES)}")
        lm, tokenizer, title = build_opt(shape, resolve_dtype(dtype_name), target), WordIdTokenizer(), shape
    if dataset is None:
        dataset = synthetic_dataset(items, prompt_len, options, option_len, preface_len,
                                    vocab=lm.get_output_embeddings().weight.shape[0])
    if methods is None and "invscale-triton" not in chosen:
        log("invscale-triton left out: its kernels need a CUDA GPU (or TRITON_INTERPRET=1, slow, and --methods "
            "naming it)")
    return {**run_benchmark(lm, tokenizer, dataset, chosen, repeats, max_tokens_per_pack, log=log), "model": title}


def bench_host(model: str | None, data: str | None, max_tokens_per_pack: int | None = None) -> dict:
    """The host side of a run for ``model``'s tokenizer on ``data`` (no weights loaded): reading,
    tokenizing, planning and building every pack, against the FLOP floor of its unique tokens on
    OPT-1.3B and an H100 (see :func:`invscale.benchmark.host.host_benchmark`)."""
    from invscale.benchmark.host import host_benchmark

    if model is None or data is None:
        raise ValueError("--host-only needs --model (whose tokenizer is timed) and --data")
    tokenizer, config = load_tokenizer(model)
    read_began = time.perf_counter()
    dataset = read_dataset(data)
    return {"model": model, "read_seconds": time.perf_counter() - read_began,
            **host_benchmark(tokenizer, config, dataset, max_tokens_per_pack)}
