"""Score a dataset: tokenize, find the shared preface, pack tries, run them, and compute metrics.

Host work streams beside the device: rows are taken in order of their prompt text, a chunk at a
time; each chunk is tokenized (unique text only, see :mod:`invscale.scoring.tokenize`), planned
and built into packs on a background thread, and the packs wait in a short queue for the model.
So the first pack runs after one chunk's work whatever the dataset's size, and host memory holds
a few chunks, not the dataset's tokens. Everything that could refuse the run (token counts
beyond the model's positions, the architecture's limits, continuations with no tokens) is checked
before the first pack, from cheap upper bounds and exact counts for the few rows near a limit.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from invscale.data import DataError, Dataset, TaskType
from invscale.kernels.launch import resolve_kernels
from invscale.scoring import architectures
from invscale.scoring.attention import resolve_backend
from invscale.scoring.distributed import Group
from invscale.scoring.metrics import example_metrics
from invscale.scoring.runner import PackRunner
from invscale.scoring.streamed import StreamedModel, StreamedRunner, plan_groups
from invscale.scoring.tokenize import (PairTokenizer, ScoredSequence, check_sequences, contexts, continuations,
                                       row_pairs)
from invscale.scoring.trie import Pack, SequenceRef, build_packs, common_prefix_length

# Unique tokens per packed forward pass when none is given: on a CPU (segment attention) 1024 ran
# fastest of 512 … 4096 on the seed tasks with SmolLM2-135M (bench/RESULTS.md), while a GPU wants
# long packs to fill its matrix units.
DEFAULT_MAX_TOKENS_PER_PACK = {"cpu": 1024, "cuda": 8192}
CHUNK_ROWS = 2048  # rows tokenized and planned together
QUEUED_PACKS = 8  # built packs waiting for the model, at most


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def default_max_tokens_per_pack(model) -> int:
    """The pack budget for the device the model is on."""
    return DEFAULT_MAX_TOKENS_PER_PACK.get(model.device.type, DEFAULT_MAX_TOKENS_PER_PACK["cpu"])


@dataclass
class ScoreStats:
    """Work counts: unique tokens actually computed vs what one forward per option would run
    (naive and answer tokens are known once every pack is planned)."""

    items: int = 0
    sequences: int = 0
    packs: int = 0
    preface_tokens: int = 0
    unique_tokens: int = 0
    naive_tokens: int = 0
    answer_tokens: int = 0


class ScoringJob:
    """Checks a dataset against the model, then yields per-example results as packs finish.

    ``max_tokens_per_pack``: unique tokens per forward pass (default by device, see above).
    ``skip_indexes``: row indexes already scored (a resumed run). Every row is still planned, so the
    packs (and so the results, to the bit) are the same however often a run was resumed; only
    packs holding a row still to score are run.
    ``streamed``: run with the decoder layers streamed from the checkpoint (see
    :mod:`invscale.scoring.streamed`), in groups of packs whose activations fit ``memory_budget``
    bytes (the whole plan is built first); ``on_layer(index, count)`` is called after each layer.
    ``kernels``: ``triton`` (fused LM head and, with ``backend="auto"``, tree attention), ``torch``,
    or ``auto`` (see :func:`invscale.kernels.launch.resolve_kernels`); ``backend`` names the tree
    attention explicitly. ``splice=False`` tokenizes every pair as one whole string.
    ``group``: the processes scoring together under torchrun (see :mod:`invscale.scoring.distributed`);
    every one of them yields every result.
    """

    def __init__(self, model, tokenizer, dataset: Dataset, max_tokens_per_pack: int | None = None,
                 backend: str = "auto", skip_indexes: frozenset[int] | set[int] = frozenset(),
                 kernels: str = "auto", streamed: StreamedModel | None = None, memory_budget: int | None = None,
                 on_layer: Callable[[int, int], None] | None = None, splice: bool = True,
                 chunk_rows: int = CHUNK_ROWS, group: Group = Group()):
        if streamed is not None:
            model = streamed.model
        self.model, self.dataset, self.chunk_rows = model, dataset, chunk_rows
        self.streamed, self.on_layer, self.stream_times, self.group = streamed, on_layer, None, group
        self.kernels = resolve_kernels(kernels, model.device)
        self.backend = resolve_backend(backend, model.device, self.kernels)
        self.max_tokens_per_pack = max_tokens_per_pack or default_max_tokens_per_pack(model)
        task_type = dataset.task_type
        self.pairs = PairTokenizer(tokenizer, (c for row in dataset.rows for c in contexts(row, task_type)),
                                   splice=splice)
        self.rows = sorted(dataset.rows, key=lambda row: (row.prompt, row.index))  # neighbours share prompt text
        self._pending = np.fromiter((row.index not in skip_indexes for row in self.rows), dtype=bool,
                                    count=len(self.rows))
        self._row_pairs = [continuations(row, task_type) for row in self.rows]
        counts = np.fromiter(map(len, self._row_pairs), dtype=np.int64, count=len(self.rows))
        self._first_sequence = np.concatenate([[0], np.cumsum(counts)])
        self._pending_sequence = np.repeat(self._pending, counts)
        self._eager: list[tuple[tuple[int, ...], int]] | None = None
        self._aliases: dict[int, list[int]] = {}  # a packed sequence's id -> ids of the same pair on other rows
        if self.pairs.rule is None:
            self._tokenize_whole_strings(dataset)
        self._check_before_any_work()
        self.preface = self.pairs.preface
        self.stats = ScoreStats(items=int(self._pending.sum()), sequences=int(counts[self._pending].sum()),
                                preface_tokens=len(self.preface) if self._pending.any() else 0)
        if streamed is not None:
            self.packs = self.plan()
            self.groups = plan_groups(streamed, len(self.preface), [p.n_tokens for p in self.packs], memory_budget,
                                      self.backend)

    def _tokenize_whole_strings(self, dataset: Dataset) -> None:
        """No splice rule: tokenize every row now, and take their common token prefix as the preface."""
        sequences = self.pairs.suffixes(row_pairs(self.rows, dataset.task_type))
        preface = sequences[0][0] if sequences else ()
        for tokens, _ in sequences:
            preface = preface[:common_prefix_length(preface, tokens)]
        self.pairs.adopt_preface(preface)
        self._eager = [(tokens[len(preface):], n) for tokens, n in sequences]

    def _check_before_any_work(self) -> None:
        """Refuse, before the first pack, rows the model cannot score (too long for its positions
        or for the architecture's limits, continuations with no tokens, nothing to predict from)
        and architectures or features the scorer cannot score exactly."""
        config = self.model.config
        max_positions = getattr(config, "max_position_embeddings", None)
        limits = [limit for limit in (max_positions, architectures.length_limit(config)) if limit is not None]
        limit = min(limits) if limits else None
        task_type = self.dataset.task_type
        flat = [pair for pairs in self._row_pairs for pair in pairs]
        self._check_targets(flat)
        if self._eager is not None:  # every row is tokenized already
            exact_rows = self.rows
            sequences = [ScoredSequence(self.pairs.preface + tokens, n) for tokens, n in self._eager]
            longest = 0
        else:  # upper bounds on token counts; rows near a limit (or with tiny contexts) tokenized now
            rule = self.pairs.rule
            scale = 4 if rule.normalizes else 1  # normalizers may expand text (NFKC), never four-fold per byte
            context_chars = np.fromiter((len(c) for c, _ in flat), dtype=np.int64, count=len(flat))
            pair_bytes = np.fromiter((_utf8_length(c) + _utf8_length(k) for c, k in flat), dtype=np.int64,
                                     count=len(flat))
            starts = self._first_sequence[:-1]
            bound = len(rule.special_prefix) + 1 + scale * np.maximum.reduceat(pair_bytes, starts) if flat else pair_bytes
            tiny = np.minimum.reduceat(context_chars, starts) <= rule.margin if flat else context_chars > 0
            exact = tiny | (bound > limit) if limit is not None else tiny
            exact_rows = [self.rows[i] for i in np.flatnonzero(exact)]
            longest = max(len(self.pairs.preface) + 1, int(bound[~exact].max()) if (~exact).any() else 0)
            sequences = self.pairs.sequences(row_pairs(exact_rows, task_type))  # few rows: near a limit
        check_sequences(exact_rows, task_type, sequences, self.dataset.name, max_positions)
        longest = max([longest] + [len(s.tokens) for s in sequences])
        architectures.check_architecture(config, longest)

    def _check_targets(self, pairs: list[tuple[str, str]]) -> None:
        """Every continuation has tokens of its own (its count is what is scored)."""
        counts = self.pairs.target_counts(k for _, k in pairs)
        empty = {k for k, n in counts.items() if n == 0}
        if empty:
            field_name = "completion" if self.dataset.task_type is TaskType.sequence_prob else "classes"
            for row, own_pairs in zip(self.rows, self._row_pairs):
                for _, continuation in own_pairs:
                    if continuation in empty:
                        raise DataError(f"{self.dataset.name}: row {row.index + 1}: field '{field_name}': "
                                        f"{continuation!r} has no tokens")

    def _check_predictable(self, seq_ids: list[int], suffixes) -> None:
        """A continuation whose tokens would be the whole sequence (no BOS, and a context that
        merged into it) has nothing to predict its first token: refused with the row named."""
        preface, task_type = len(self.pairs.preface), self.dataset.task_type
        for seq_id, (tokens, n_target) in zip(seq_ids, suffixes):
            if n_target >= preface + len(tokens):
                row = self.rows[int(np.searchsorted(self._first_sequence, seq_id, side="right")) - 1]
                field_name = "completion" if task_type is TaskType.sequence_prob else "classes"
                raise DataError(f"{self.dataset.name}: row {row.index + 1}: field '{field_name}': the continuation "
                                "would be the whole sequence; nothing predicts its first token")

    def plan(self) -> list[Pack]:
        """Every pack of the job, built now (what :meth:`results` streams)."""
        return list(self.iter_packs())

    def iter_packs(self) -> Iterator[Pack]:
        """The packs that hold a row still to score, in order, a chunk of rows tokenized, planned and
        built at a time (what :meth:`results` runs, on a background thread). A pair repeated
        within a chunk (the same context and continuation on another row) is tokenized and packed
        once; the repeats are recorded as its aliases."""
        held: list[SequenceRef] = []
        for start in range(0, len(self.rows), self.chunk_rows):
            stop = min(start + self.chunk_rows, len(self.rows))
            first = int(self._first_sequence[start])
            distinct: dict[tuple[str, str], int] = {}
            owners: list[int] = []  # the id of each distinct pair's first sequence
            numbers = []  # each sequence's distinct pair
            for offset, pair in enumerate(pair for pairs in self._row_pairs[start:stop] for pair in pairs):
                number = distinct.setdefault(pair, len(distinct))
                numbers.append(number)
                if number == len(owners):
                    owners.append(first + offset)
                else:
                    self._aliases.setdefault(owners[number], []).append(first + offset)
            if self._eager is not None:
                suffixes = [self._eager[seq_id] for seq_id in owners]
            else:
                suffixes = self.pairs.suffixes(list(distinct))
            self._check_predictable(owners, suffixes)
            pending = np.bincount(numbers, weights=self._pending_sequence[first:first + len(numbers)],
                                  minlength=len(owners))  # how many of each pair's sequences are to score
            lengths = np.fromiter((len(tokens) + len(self.preface) for tokens, _ in suffixes), dtype=np.int64)
            self.stats.naive_tokens += int((lengths * pending).sum())
            self.stats.answer_tokens += int((np.fromiter((n for _, n in suffixes), dtype=np.int64) * pending).sum())
            refs = held + [SequenceRef(seq_id, tokens, n) for seq_id, (tokens, n) in zip(owners, suffixes)]
            packs, held = build_packs(refs, self.max_tokens_per_pack, self.preface, keep_last=stop < len(self.rows))
            yield from (pack for pack in packs if self._any_pending(pack))

    def _any_pending(self, pack: Pack) -> bool:
        """Whether ``pack`` holds a sequence (or a repeat of one) of a row still to score."""
        return any(self._pending_sequence[seq_id] or any(self._pending_sequence[same] for same in
                                                          self._aliases.get(seq_id, ()))
                   for seq_id in pack.seq_ids)

    def _packs_beside(self) -> Iterator[Pack]:
        """:meth:`iter_packs` run on a background thread, at most ``QUEUED_PACKS`` ahead."""
        waiting: queue.Queue = queue.Queue(maxsize=QUEUED_PACKS)
        done = object()
        stop = threading.Event()

        def produce():
            try:
                for pack in self.iter_packs():
                    while not stop.is_set():
                        try:
                            waiting.put(pack, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                waiting.put(done)
            except BaseException as exc:  # handed to the consumer, which raises it
                waiting.put(exc)

        worker = threading.Thread(target=produce, name="invscale-planner", daemon=True)
        worker.start()
        try:
            while True:
                item = waiting.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def results(self, on_pack: Callable[[int, int], None] | None = None) -> Iterator[dict]:
        """Yield one result dict per row as soon as all its sequences are scored.

        ``on_pack(rows_finished, tokens_computed)`` is called after each pack.
        """
        if not self._pending.any():
            return
        first = self._first_sequence
        owner = np.repeat(np.arange(len(self.rows)), np.diff(first))
        remaining = np.where(self._pending, np.diff(first), -1)  # rows already scored never finish again
        logprobs = np.zeros(int(first[-1]), dtype=np.float64)
        self.stats.unique_tokens = self.stats.preface_tokens
        passes = self._streamed_passes() if self.streamed is not None else self._resident_passes()
        for pack, launched in passes:
            pair_logprobs = launched.double().cpu().numpy()
            self.stats.unique_tokens += pack.n_tokens
            self.stats.packs += 1
            finished = []
            for seq_id, pairs in zip(pack.seq_ids, pack.seq_pairs):
                value = pair_logprobs[pairs].sum()
                for same in (seq_id, *self._aliases.pop(seq_id, ())):
                    logprobs[same] = value
                    r = owner[same]
                    remaining[r] -= 1
                    if remaining[r] == 0:
                        finished.append(r)
            for r in finished:
                yield example_metrics(self.dataset.task_type, self.rows[r], logprobs[first[r]:first[r + 1]].tolist())
            if on_pack is not None:
                on_pack(len(finished), pack.n_tokens)

    def _resident_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) with the whole model resident, one forward pass per pack (this
        process's share of them under torchrun, the others' received)."""
        with PackRunner(self.model, backend=self.backend, kernels=self.kernels) as runner:
            runner.set_preface(self.preface)
            yield from self.group.passes(([pack] for pack in self._packs_beside()),
                                         lambda unit: [runner.pair_logprobs(unit[0])])

    def _streamed_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) streaming the layers once per group of packs (under torchrun,
        groups are dealt out among the processes)."""
        runner = StreamedRunner(self.streamed, backend=self.backend, kernels=self.kernels, on_layer=self.on_layer)
        self.stream_times = runner.times
        yield from self.group.passes(([self.packs[i] for i in group] for group in self.groups),
                                     lambda packs: runner.run(self.preface, packs))


def score_token_sequences(model, sequences: list[tuple[tuple[int, ...], int]], max_tokens_per_pack: int | None = None,
                          backend: str = "auto", kernels: str = "auto") -> tuple[list[float], list[bool]]:
    """For token sequences given as (tokens, n_target): the summed log-prob of each one's last
    ``n_target`` tokens and whether each of those tokens is the argmax of its prediction, from one
    trie run (the preface is the tokens every sequence shares; a repeated sequence runs once).
    What lm-evaluation-harness's ``loglikelihood`` asks, for requests it has tokenized itself."""
    if not sequences:
        return [], []
    architectures.check_architecture(model.config, max(len(tokens) for tokens, _ in sequences))
    kernels = resolve_kernels(kernels, model.device)
    preface = sequences[0][0]
    for tokens, _ in sequences:
        preface = preface[:common_prefix_length(preface, tokens)]
    distinct = {}
    for number, (tokens, n_target) in enumerate(sequences):
        if n_target < 1 or n_target >= len(tokens):
            raise ValueError(f"sequence {number}: {n_target} scored tokens of {len(tokens)}; nothing would predict "
                             "the first")
        distinct.setdefault((tokens, n_target), len(distinct))
    refs = [SequenceRef(number, tokens[len(preface):], n_target) for (tokens, n_target), number in distinct.items()]
    packs, _ = build_packs(refs, max_tokens_per_pack or default_max_tokens_per_pack(model), preface)
    logprobs, greedy = np.zeros(len(distinct)), np.zeros(len(distinct), dtype=bool)
    with PackRunner(model, backend=resolve_backend(backend, model.device, kernels), kernels=kernels) as runner:
        runner.set_preface(preface)
        for pack in packs:
            pair_logprobs, pair_greedy = runner.pair_logprobs(pack, with_greedy=True)
            pair_logprobs, pair_greedy = pair_logprobs.double().cpu().numpy(), pair_greedy.cpu().numpy()
            for seq_id, pairs in zip(pack.seq_ids, pack.seq_pairs):
                logprobs[seq_id], greedy[seq_id] = pair_logprobs[pairs].sum(), pair_greedy[pairs].all()
    order = [distinct[key] for key in sequences]
    return logprobs[order].tolist(), greedy[order].tolist()
