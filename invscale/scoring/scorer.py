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

from invscale.data import DataError, Dataset, Row
from invscale.kernels.launch import resolve_kernels
from invscale.scoring import architectures
from invscale.scoring.attention import resolve_backend
from invscale.scoring.distributed import Group
from invscale.scoring.metrics import example_metrics
from invscale.scoring.runner import PackRunner
from invscale.scoring.streamed import StreamedModel, StreamedRunner, plan_groups
from invscale.scoring.tokenize import (PairTokenizer, ScoredSequence, check_sequences, contexts, continuation_field,
                                       continuations, row_pairs)
from invscale.scoring.trie import Pack, SequenceRef, build_packs, common_prefix

# Unique tokens per packed forward pass when none is given: on a CPU (segment attention) 1024 ran
# fastest of 512 … 4096 on the seed tasks with SmolLM2-135M (bench/RESULTS.md), while a GPU wants
# long packs to fill its matrix units.
DEFAULT_MAX_TOKENS_PER_PACK = {"cpu": 1024, "cuda": 8192}
CHUNK_ROWS = 2048  # rows tokenized and planned together
TOO_LONG = ("error", "skip", "truncate-left")  # what to do with rows longer than the model can score
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
    ``too_long``: rows longer than the model scores exactly (its positions, or an architecture's
    length limit) are an ``error`` naming every one of them (the default), ``skip``ped (each gets a
    result holding only ``skipped``, the reason), or ``truncate-left``: the oldest tokens of each of
    the row's sequences are dropped to fit, as lm-evaluation-harness does, and ``truncated`` says how
    many (those sequences share no preface, so they run after the packs, apart).
    """

    def __init__(self, model, tokenizer, dataset: Dataset, max_tokens_per_pack: int | None = None,
                 backend: str = "auto", skip_indexes: frozenset[int] | set[int] = frozenset(),
                 kernels: str = "auto", streamed: StreamedModel | None = None, memory_budget: int | None = None,
                 on_layer: Callable[[int, int], None] | None = None, splice: bool = True,
                 chunk_rows: int = CHUNK_ROWS, group: Group = Group(), too_long: str = "error"):
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
        self.too_long = check_too_long(too_long)
        self._eager: list[tuple[tuple[int, ...], int]] | None = None
        self._aliases: dict[int, list[int]] = {}  # a packed sequence's id -> ids of the same pair on other rows
        self._index_rows(sorted(dataset.rows, key=lambda row: (row.prompt, row.index)), skip_indexes)  # neighbours share text
        if self.pairs.rule is None:
            self._tokenize_whole_strings(dataset)
        long_rows = self._check_before_any_work()  # (row, its whole sequences), scored apart or skipped
        self._long_rows = [(row, sequences) for row, sequences in long_rows if row.index not in skip_indexes]
        if long_rows:
            self._set_long_rows_apart({row.index for row, _ in long_rows}, skip_indexes)
        self.preface = self.pairs.preface
        counts = np.diff(self._first_sequence)
        self.stats = ScoreStats(items=int(self._pending.sum()) + len(self._long_rows),
                                sequences=int(counts[self._pending].sum()),
                                preface_tokens=len(self.preface) if self._pending.any() else 0)
        if streamed is not None:
            self.packs = self.plan()
            self.groups = plan_groups(streamed, len(self.preface), [p.n_tokens for p in self.packs], memory_budget,
                                      self.backend)

    @property
    def too_long_rows(self) -> int:
        """Rows still to score that are too long for the model (skipped or truncated)."""
        return len(self._long_rows)

    def _index_rows(self, rows, skip_indexes) -> None:
        """Take ``rows`` (in packing order) as the rows packed: their pairs, where each one's sequences
        start in the flat list of sequences, and which are still to score."""
        self.rows = rows
        self._pending = np.fromiter((row.index not in skip_indexes for row in rows), dtype=bool, count=len(rows))
        self._row_pairs = [continuations(row, self.dataset.task_type) for row in rows]
        counts = np.fromiter(map(len, self._row_pairs), dtype=np.int64, count=len(rows))
        self._first_sequence = np.concatenate([[0], np.cumsum(counts)])
        self._pending_sequence = np.repeat(self._pending, counts)

    def _set_long_rows_apart(self, long: set[int], skip_indexes) -> None:
        """Leave the rows too long for the model (indexes ``long``) out of the packs (already scored
        ones too, so a resumed run packs as the first did)."""
        kept = [number for number, row in enumerate(self.rows) if row.index not in long]
        if self._eager is not None:
            first = self._first_sequence
            self._eager = [sequence for number in kept for sequence in self._eager[first[number]:first[number + 1]]]
        self._index_rows([self.rows[number] for number in kept], skip_indexes)

    def _tokenize_whole_strings(self, dataset: Dataset) -> None:
        """No splice rule: tokenize every row now, and take their common token prefix as the preface."""
        sequences = self.pairs.suffixes(row_pairs(self.rows, dataset.task_type))
        preface = common_prefix(tokens for tokens, _ in sequences)
        self.pairs.adopt_preface(preface)
        self._eager = [(tokens[len(preface):], n) for tokens, n in sequences]

    def _check_before_any_work(self) -> list[tuple[Row, list[ScoredSequence]]]:
        """Refuse, before the first pack, rows the model cannot score (continuations with no tokens,
        nothing to predict from) and architectures or features the scorer cannot score exactly; rows
        too long for the model's positions or the architecture's limits are refused all at once
        (``too_long="error"``) or returned with their sequences."""
        config = self.model.config
        max_positions = getattr(config, "max_position_embeddings", None)
        limit = max_sequence_length(config)
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
        grouped = check_sequences(exact_rows, task_type, sequences, self.dataset.name, None)
        lengths = [max(len(s.tokens) for s in row_sequences) for row_sequences in grouped]
        long_rows = [(row, row_sequences, length) for row, row_sequences, length in zip(exact_rows, grouped, lengths)
                     if limit is not None and length > limit]
        if long_rows and self.too_long == "error":
            longest_row = max(length for _, _, length in long_rows)
            if max_positions is None or longest_row <= max_positions:  # the architecture's own limit: its reason
                architectures.check_architecture(config, longest_row)
            raise DataError(too_long_message(self.dataset.name, [(row.index, length) for row, _, length in long_rows],
                                             limit_words(config)))
        if self.too_long == "truncate-left":
            for row, row_sequences, _ in long_rows:
                longest_target = max(s.n_target for s in row_sequences)
                if longest_target >= limit:
                    raise DataError(f"{self.dataset.name}: row {row.index + 1}: field '{continuation_field(task_type)}': "
                                    f"a continuation alone is {longest_target} tokens; with --too-long truncate-left "
                                    f"nothing of the prompt would be left (the model takes {limit})")
        longest = max([longest] + [length for length in lengths if limit is None or length <= limit])
        architectures.check_architecture(config, longest)
        return [(row, row_sequences) for row, row_sequences, _ in long_rows]

    def _check_targets(self, pairs: list[tuple[str, str]]) -> None:
        """Every continuation has tokens of its own (its count is what is scored)."""
        counts = self.pairs.target_counts(k for _, k in pairs)
        empty = {k for k, n in counts.items() if n == 0}
        if empty:
            field_name = continuation_field(self.dataset.task_type)
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
                raise DataError(f"{self.dataset.name}: row {row.index + 1}: field '{continuation_field(task_type)}': "
                                "the continuation would be the whole sequence; nothing predicts its first token")

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
        """Yield one result dict per row as soon as all its sequences are scored (rows too long for
        the model last, skipped or truncated as ``too_long`` says).

        ``on_pack(rows_finished, tokens_computed)`` is called after each pack.
        """
        yield from self._packed_results(on_pack)
        yield from self._long_results(on_pack)

    def _long_results(self, on_pack: Callable[[int, int], None] | None) -> Iterator[dict]:
        """Results of the rows too long for the model: skipped, or scored truncated from the left."""
        if not self._long_rows:
            return
        limit = max_sequence_length(self.model.config)
        if self.too_long == "skip":
            for row, sequences in self._long_rows:
                yield {"index": row.index, "skipped": f"{max(len(s.tokens) for s in sequences)} tokens, more than "
                                                      f"{limit_words(self.model.config)}"}
        else:
            flat = [(s.tokens[-limit:], s.n_target) for _, sequences in self._long_rows for s in sequences]
            logprobs, _ = score_token_sequences(self.model, flat, self.max_tokens_per_pack, self.backend, self.kernels)
            cursor = 0
            for row, sequences in self._long_rows:
                row_logprobs = logprobs[cursor:cursor + len(sequences)]
                cursor += len(sequences)
                dropped = max(len(s.tokens) for s in sequences) - limit
                yield {**example_metrics(self.dataset.task_type, row, row_logprobs),
                       "truncated": f"{dropped} oldest prompt tokens dropped"}
        if on_pack is not None:
            on_pack(len(self._long_rows), 0)

    def _packed_results(self, on_pack: Callable[[int, int], None] | None) -> Iterator[dict]:
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


def check_too_long(choice: str) -> str:
    """``choice`` if it is one of :data:`TOO_LONG`, else ValueError in one line."""
    if choice not in TOO_LONG:
        raise ValueError(f"--too-long {choice}: choose one of {', '.join(TOO_LONG)}")
    return choice


def max_sequence_length(config) -> int | None:
    """The longest sequence the model scores exactly: its positions, or an architecture's limit."""
    limits = [limit for limit in (getattr(config, "max_position_embeddings", None), architectures.length_limit(config))
              if limit is not None]
    return min(limits) if limits else None


def limit_words(config) -> str:
    """What limits a sequence's length, in words: the model's positions, or the architecture's."""
    limit, positions = max_sequence_length(config), getattr(config, "max_position_embeddings", None)
    if limit == positions:
        return f"the model's {positions} positions"
    return f"{limit} tokens, up to which this architecture is scored exactly"


def too_long_message(source: str, rows: list[tuple[int, int]], limit: str) -> str:
    """One line naming every row (index, tokens) longer than ``limit`` (in words) and the choices left."""
    numbers = sorted(index + 1 for index, _ in rows)
    shown = ", ".join(map(str, numbers[:20])) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
    return (f"{source}: {'rows' if len(rows) > 1 else 'row'} {shown}: field 'prompt': context + continuation is up to "
            f"{max(length for _, length in rows)} tokens, more than {limit}; --too-long skip scores the other rows, "
            f"--too-long truncate-left drops the oldest prompt tokens")


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
    preface = common_prefix(tokens for tokens, _ in sequences)
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
