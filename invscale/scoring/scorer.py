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
from invscale.scoring.metrics import example_metrics
from invscale.scoring.runner import PackRunner
from invscale.scoring.streamed import StreamedModel, StreamedRunner, plan_groups
from invscale.scoring.tokenize import PairTokenizer, ScoredSequence, check_sequences, continuations, row_pairs
from invscale.scoring.trie import Pack, SequenceRef, build_packs, common_prefix_length

# Unique tokens per packed forward pass when none is given: on a CPU (segment attention) 1024 ran
# fastest of 512 … 4096 on the seed tasks with SmolLM2-135M (bench/RESULTS.md), while a GPU wants
# long packs to fill its matrix units.
DEFAULT_MAX_TOKENS_PER_PACK = {"cpu": 1024, "cuda": 8192}
CHUNK_ROWS = 2048  # rows tokenized and planned together
QUEUED_PACKS = 8  # built packs waiting for the model, at most


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
    ``skip_indexes``: row indexes already scored (a resumed run); they are not packed or run, but
    still count towards the dataset-wide preface so it does not change between runs.
    ``streamed``: run with the decoder layers streamed from the checkpoint (see
    :mod:`invscale.scoring.streamed`), in groups of packs whose activations fit ``memory_budget``
    bytes (the whole plan is built first); ``on_layer(index, count)`` is called after each layer.
    ``kernels``: ``triton`` (fused LM head and, with ``backend="auto"``, tree attention), ``torch``,
    or ``auto`` (see :func:`invscale.kernels.launch.resolve_kernels`); ``backend`` names the tree
    attention explicitly. ``splice=False`` tokenizes every pair as one whole string.
    """

    def __init__(self, model, tokenizer, dataset: Dataset, max_tokens_per_pack: int | None = None,
                 backend: str = "auto", skip_indexes: frozenset[int] | set[int] = frozenset(),
                 kernels: str = "auto", streamed: StreamedModel | None = None, memory_budget: int | None = None,
                 on_layer: Callable[[int, int], None] | None = None, splice: bool = True,
                 chunk_rows: int = CHUNK_ROWS):
        if streamed is not None:
            model = streamed.model
        self.model, self.dataset, self.chunk_rows = model, dataset, chunk_rows
        self.streamed, self.on_layer, self.stream_times = streamed, on_layer, None
        self.kernels = resolve_kernels(kernels, model.device)
        self.backend = resolve_backend(backend, model.device, self.kernels)
        self.max_tokens_per_pack = max_tokens_per_pack or default_max_tokens_per_pack(model)
        task_type = dataset.task_type
        self.pairs = PairTokenizer(tokenizer, (c for row in dataset.rows for c, _ in continuations(row, task_type)),
                                   splice=splice)
        self.rows = sorted((row for row in dataset.rows if row.index not in skip_indexes),
                           key=lambda row: (row.prompt, row.index))  # neighbours share prompt text
        counts = np.fromiter((len(continuations(row, task_type)) for row in self.rows), dtype=np.int64,
                             count=len(self.rows))
        self._first_sequence = np.concatenate([[0], np.cumsum(counts)])
        self._eager: list[tuple[tuple[int, ...], int]] | None = None
        if self.pairs.rule is None:
            self._tokenize_whole_strings(dataset)
        self._check_before_any_work()
        self.preface = self.pairs.preface
        self.stats = ScoreStats(items=len(self.rows), sequences=int(counts.sum()),
                                preface_tokens=len(self.preface) if self.rows else 0)
        if streamed is not None:
            self.packs = self.plan()
            self.groups = plan_groups(streamed, len(self.preface), [p.n_tokens for p in self.packs], memory_budget,
                                      self.backend)

    def _tokenize_whole_strings(self, dataset: Dataset) -> None:
        """No splice rule: tokenize every row now (all rows, so a resumed run finds the same
        preface), and take their common token prefix as the preface."""
        all_rows = dataset.rows
        sequences = self.pairs.suffixes(row_pairs(all_rows, dataset.task_type))
        preface = sequences[0][0] if sequences else ()
        for tokens, _ in sequences:
            preface = preface[:common_prefix_length(preface, tokens)]
        self.pairs.adopt_preface(preface)
        by_row = dict(zip((row.index for row in all_rows), np.cumsum(
            [0] + [len(continuations(row, dataset.task_type)) for row in all_rows]).tolist()))
        self._eager = []
        for row in self.rows:
            start = by_row[row.index]
            self._eager += [(tokens[len(preface):], n) for tokens, n in
                            sequences[start:start + len(continuations(row, dataset.task_type))]]

    def _check_before_any_work(self) -> None:
        """Refuse, before the first pack, rows the model cannot score (too long for its positions
        or for the architecture's limits, continuations with no tokens, nothing to predict from)
        and architectures or features the scorer cannot score exactly."""
        config = self.model.config
        max_positions = getattr(config, "max_position_embeddings", None)
        limits = [limit for limit in (max_positions, architectures.length_limit(config)) if limit is not None]
        limit = min(limits) if limits else None
        task_type, preface = self.dataset.task_type, len(self.pairs.preface)
        self.pairs.target_counts(k for row in self.rows for _, k in continuations(row, task_type))
        if self._eager is not None:  # every row is tokenized already
            exact_rows = self.rows
            sequences = [ScoredSequence(self.pairs.preface + tokens, n) for tokens, n in self._eager]
            longest = 0
        else:  # upper bounds on token counts; rows near a limit (or with tiny contexts) tokenized now
            rule = self.pairs.rule
            scale = 4 if rule.normalizes else 1  # normalizers may expand text (NFKC), never four-fold per byte
            exact_rows, longest = [], preface + 1
            for row in self.rows:
                pairs = continuations(row, task_type)
                bound = len(rule.special_prefix) + 1 + scale * max(len((c + k).encode()) for c, k in pairs)
                if (limit is not None and bound > limit) or any(len(c) <= rule.margin for c, _ in pairs):
                    exact_rows.append(row)
                else:
                    longest = max(longest, bound)
            sequences = self.pairs.sequences(row_pairs(exact_rows, task_type))
        check_sequences(exact_rows, task_type, sequences, self.dataset.name, max_positions)
        longest = max([longest] + [len(s.tokens) for s in sequences])
        self._check_targets()
        architectures.check_architecture(config, longest)

    def _check_targets(self) -> None:
        counts = self.pairs.target_counts(())
        field_name = "completion" if self.dataset.task_type is TaskType.sequence_prob else "classes"
        for row in self.rows:
            for _, continuation in continuations(row, self.dataset.task_type):
                if counts[continuation] == 0:
                    raise DataError(f"{self.dataset.name}: row {row.index + 1}: field '{field_name}': "
                                    f"{continuation!r} has no tokens")

    def _check_predictable(self, rows, suffixes) -> None:
        """A continuation whose tokens would be the whole sequence (no BOS, and a context that
        merged into it) has nothing to predict its first token: refused with the row named."""
        preface, task_type = len(self.pairs.preface), self.dataset.task_type
        owners = [row for row in rows for _ in continuations(row, task_type)]
        for row, (tokens, n_target) in zip(owners, suffixes):
            if n_target >= preface + len(tokens):
                field_name = "completion" if task_type is TaskType.sequence_prob else "classes"
                raise DataError(f"{self.dataset.name}: row {row.index + 1}: field '{field_name}': the continuation "
                                "would be the whole sequence; nothing predicts its first token")

    def plan(self) -> list[Pack]:
        """Every pack of the job, built now (what :meth:`results` streams)."""
        return list(self._built_packs())

    def _built_packs(self) -> Iterator[Pack]:
        """Packs in order, a chunk of rows tokenized and planned at a time."""
        held: list[SequenceRef] = []
        task_type = self.dataset.task_type
        for start in range(0, len(self.rows), self.chunk_rows):
            rows = self.rows[start:start + self.chunk_rows]
            first = int(self._first_sequence[start])
            if self._eager is not None:
                suffixes = self._eager[first:int(self._first_sequence[start + len(rows)])]
            else:
                suffixes = self.pairs.suffixes(row_pairs(rows, task_type))
            self._check_predictable(rows, suffixes)
            self.stats.naive_tokens += sum(len(tokens) for tokens, _ in suffixes) + len(self.preface) * len(suffixes)
            self.stats.answer_tokens += sum(n for _, n in suffixes)
            refs = held + [SequenceRef(first + i, tokens, n) for i, (tokens, n) in enumerate(suffixes)]
            last = start + self.chunk_rows >= len(self.rows)
            packs, held = build_packs(refs, self.max_tokens_per_pack, self.preface, keep_last=not last)
            yield from packs

    def _packs_beside(self) -> Iterator[Pack]:
        """:meth:`_built_packs` run on a background thread, at most ``QUEUED_PACKS`` ahead."""
        waiting: queue.Queue = queue.Queue(maxsize=QUEUED_PACKS)
        done = object()
        stop = threading.Event()

        def produce():
            try:
                for pack in self._built_packs():
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
        if not self.rows:
            return
        first = self._first_sequence
        owner = np.repeat(np.arange(len(self.rows)), np.diff(first))
        remaining = np.diff(first).copy()
        logprobs = np.zeros(int(first[-1]), dtype=np.float64)
        self.stats.unique_tokens = self.stats.preface_tokens
        passes = self._streamed_passes() if self.streamed is not None else self._resident_passes()
        for pack, launched in passes:
            pair_logprobs = launched.double().cpu().numpy()
            self.stats.unique_tokens += pack.n_tokens
            self.stats.packs += 1
            finished = []
            for seq_id, pairs in zip(pack.seq_ids, pack.seq_pairs):
                logprobs[seq_id] = pair_logprobs[pairs].sum()
                r = owner[seq_id]
                remaining[r] -= 1
                if remaining[r] == 0:
                    finished.append(r)
            for r in finished:
                yield example_metrics(self.dataset.task_type, self.rows[r], logprobs[first[r]:first[r + 1]].tolist())
            if on_pack is not None:
                on_pack(len(finished), pack.n_tokens)

    def _resident_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) with the whole model resident, one forward pass per pack."""
        with PackRunner(self.model, backend=self.backend, kernels=self.kernels) as runner:
            runner.set_preface(self.preface)
            for pack in self._packs_beside():
                yield pack, runner.pair_logprobs(pack)

    def _streamed_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) streaming the layers once per group of packs."""
        runner = StreamedRunner(self.streamed, backend=self.backend, kernels=self.kernels, on_layer=self.on_layer)
        self.stream_times = runner.times
        for group in self.groups:
            packs = [self.packs[i] for i in group]
            yield from zip(packs, runner.run(self.preface, packs))
