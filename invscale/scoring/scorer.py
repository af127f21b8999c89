"""Score a dataset: tokenize, find the shared preface, pack tries, run them, and compute metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from invscale.data import Dataset
from invscale.kernels.launch import resolve_kernels
from invscale.scoring import architectures
from invscale.scoring.attention import resolve_backend
from invscale.scoring.metrics import example_metrics
from invscale.scoring.runner import PackRunner
from invscale.scoring.tokenize import tokenize_rows
from invscale.scoring.streamed import StreamedModel, StreamedRunner, plan_groups
from invscale.scoring.trie import Pack, SequenceRef, build_pack, pack_tokens, plan_packs, preface_length

# Unique tokens per packed forward pass when none is given: on a CPU (segment attention) 1024 ran
# fastest of 512 … 4096 on the seed tasks with SmolLM2-135M (bench/RESULTS.md), while a GPU wants
# long packs to fill its matrix units.
DEFAULT_MAX_TOKENS_PER_PACK = {"cpu": 1024, "cuda": 8192}


def default_max_tokens_per_pack(model) -> int:
    """The pack budget for the device the model is on."""
    return DEFAULT_MAX_TOKENS_PER_PACK.get(model.device.type, DEFAULT_MAX_TOKENS_PER_PACK["cpu"])


@dataclass
class ScoreStats:
    """Work counts: unique tokens actually computed vs what one forward per option would run."""

    items: int = 0
    sequences: int = 0
    packs: int = 0
    preface_tokens: int = 0
    unique_tokens: int = 0
    naive_tokens: int = 0
    answer_tokens: int = 0


class ScoringJob:
    """Plans a dataset's packs up front (so progress has totals), then yields per-example results.

    ``max_tokens_per_pack``: unique tokens per forward pass (default by device, see above).
    ``skip_indexes``: row indexes already scored (a resumed run); they are not packed or run, but
    still count towards the dataset-wide preface so it does not change between runs.
    ``streamed``: run with the decoder layers streamed from the checkpoint (see
    :mod:`invscale.scoring.streamed`), in groups of packs whose activations fit ``memory_budget``
    bytes; ``on_layer(index, count)`` is called after each layer.
    ``kernels``: ``triton`` (fused LM head and, with ``backend="auto"``, tree attention), ``torch``,
    or ``auto`` (see :func:`invscale.kernels.launch.resolve_kernels`); ``backend`` names the tree
    attention explicitly.
    """

    def __init__(self, model, tokenizer, dataset: Dataset, max_tokens_per_pack: int | None = None,
                 backend: str = "auto", skip_indexes: frozenset[int] | set[int] = frozenset(),
                 kernels: str = "auto", streamed: StreamedModel | None = None, memory_budget: int | None = None,
                 on_layer: Callable[[int, int], None] | None = None):
        if streamed is not None:
            model = streamed.model
        self.model, self.dataset = model, dataset
        self.streamed, self.on_layer, self.stream_times = streamed, on_layer, None
        self.kernels = resolve_kernels(kernels, model.device)
        self.backend = resolve_backend(backend, model.device, self.kernels)
        max_positions = getattr(model.config, "max_position_embeddings", None)
        sequences = tokenize_rows(tokenizer, dataset.rows, dataset.task_type, dataset.name, max_positions)
        all_sequences = [s for row_sequences in sequences for s in row_sequences]
        architectures.check_architecture(model.config, max((len(s.tokens) for s in all_sequences), default=0))
        n_preface = preface_length(all_sequences)
        self.preface = all_sequences[0].tokens[:n_preface] if all_sequences else ()

        self.rows = [row for row in dataset.rows if row.index not in skip_indexes]
        self._sequences = [sequences[row.index] for row in self.rows]
        self._owner = [(r, s) for r, row_seqs in enumerate(self._sequences) for s in range(len(row_seqs))]
        items, seq_id = [], 0
        for row_seqs in self._sequences:
            items.append([SequenceRef(seq_id + s, seq.tokens[n_preface:], seq.n_target) for s, seq in enumerate(row_seqs)])
            seq_id += len(row_seqs)
        self.packs = plan_packs(items, max_tokens_per_pack or default_max_tokens_per_pack(model))
        if streamed is not None:
            self.groups = plan_groups(streamed, n_preface, [pack_tokens(p) for p in self.packs], memory_budget,
                                      self.backend)
        pending = [seq for row_seqs in self._sequences for seq in row_seqs]
        self.stats = ScoreStats(
            items=len(self.rows),
            sequences=len(pending),
            packs=len(self.packs),
            preface_tokens=n_preface if self.rows else 0,
            naive_tokens=sum(len(seq.tokens) for seq in pending),
            answer_tokens=sum(seq.n_target for seq in pending),
        )

    def results(self, on_pack: Callable[[int, int], None] | None = None) -> Iterator[dict]:
        """Yield one result dict per row as soon as all its sequences are scored.

        ``on_pack(rows_finished, tokens_computed)`` is called after each pack.
        """
        if not self.rows:
            return
        remaining = [len(row_seqs) for row_seqs in self._sequences]
        logprobs: list[list[float]] = [[0.0] * n for n in remaining]
        self.stats.unique_tokens = self.stats.preface_tokens
        passes = self._streamed_passes() if self.streamed is not None else self._resident_passes()
        for pack, launched in passes:
            pair_logprobs = launched.double().cpu()
            self.stats.unique_tokens += pack.n_tokens
            finished = []
            for seq_id, pairs in zip(pack.seq_ids, pack.seq_pairs):
                r, s = self._owner[seq_id]
                logprobs[r][s] = float(pair_logprobs[pairs].sum())
                remaining[r] -= 1
                if remaining[r] == 0:
                    finished.append(r)
            for r in finished:
                yield example_metrics(self.dataset.task_type, self.rows[r], logprobs[r])
            if on_pack is not None:
                on_pack(len(finished), pack.n_tokens)

    def _resident_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) with the whole model resident, one forward pass per pack."""
        with PackRunner(self.model, backend=self.backend, kernels=self.kernels) as runner:
            runner.set_preface(self.preface)
            upcoming = build_pack(self.packs[0])
            for number in range(len(self.packs)):
                pack = upcoming
                launched = runner.pair_logprobs(pack)
                if number + 1 < len(self.packs):  # build the next trie while the device works
                    upcoming = build_pack(self.packs[number + 1])
                yield pack, launched

    def _streamed_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) streaming the layers once per group of packs."""
        runner = StreamedRunner(self.streamed, backend=self.backend, kernels=self.kernels, on_layer=self.on_layer)
        self.stream_times = runner.times
        for group in self.groups:
            packs = [build_pack(self.packs[i]) for i in group]
            yield from zip(packs, runner.run(self.preface, packs))
