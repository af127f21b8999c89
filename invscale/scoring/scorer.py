"""Score a dataset: tokenize, find the shared preface, pack tries, run them, and compute metrics.

Rows are first grouped into distinct items (rows repeating a prompt and its options are scored
once, each keeping its own answer and columns), in the order of their prompt text. Host work
streams beside the device: a chunk of items at a time is tokenized (unique text only, see
:mod:`invscale.scoring.tokenize`), turned into context units and built into packs
(:mod:`invscale.scoring.trie`) on a background thread, and the packs wait in a short queue for the
model. So the first pack runs after one chunk's work whatever the dataset's size, host memory holds
a few chunks, not the dataset's tokens, and no host step grows with the naive tokens (what one
forward per option would run). Everything that could refuse the run (token counts beyond the
model's positions, the architecture's limits, continuations with no tokens) is checked before the
first pack, from cheap upper bounds and exact counts for the few items near a limit.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, chain, groupby
from operator import attrgetter
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from invscale.data import DataError, Dataset, Row, TaskType
from invscale.kernels.launch import resolve_kernels
from invscale.scoring import architectures
from invscale.scoring.attention import resolve_backend
from invscale.scoring.cache_runner import CacheRunner, ContextBatch, plan_contexts, probe
from invscale.scoring.distributed import Group
from invscale.scoring.heap import settled_heap
from invscale.scoring.metrics import example_metrics
from invscale.scoring.paths import ScoringPath, check_path, choose_path, sequence_limit
from invscale.scoring.runner import PackRunner, default_stack_tokens
from invscale.scoring.splice_check import chosen_checks
from invscale.scoring.streamed import StreamedModel, StreamedRunner, plan_groups
from invscale.scoring.tokenize import (ContextTokens, PairTokenizer, ScoredSequence, check_sequences,
                                       continuation_field, continuations)
from invscale.scoring.trie import (Pack, SequenceRef, StackPlan, Unit, build_packs, common_prefix, stack_growth,
                                   template, units_of_sequences)

# Unique tokens per packed forward pass when none is given: on a CPU (segment attention) 1024 ran
# fastest of 512 … 4096 on the seed tasks with SmolLM2-135M (bench/RESULTS.md), while a GPU wants
# long packs to fill its matrix units.
DEFAULT_MAX_TOKENS_PER_PACK = {"cpu": 1024, "cuda": 8192}
CHUNK_ROWS = 2048  # distinct items tokenized and planned together
TOO_LONG = ("error", "skip", "truncate-left")  # what to do with rows longer than the model can score
QUEUED_PACKS = 8  # built packs waiting for the model, at most
SHORT_CONTEXT = 8  # characters: contexts this short are tokenized before any work (they may merge into a continuation)
_SEQ_IDS, _STEM = attrgetter("seq_ids"), attrgetter("stem")


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _items(rows: list[Row]) -> tuple[list[Row], list[list[Row]]]:
    """Rows grouped into distinct items (the same prompts and continuations), in the order of their
    prompts' text (so that neighbours share text; equal prompts keep the order of ``rows``): each
    item's first row, and all its rows."""
    by_prompt: defaultdict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_prompt[row.prompt].append(row)
    if len(by_prompt) == len(rows):  # every prompt once, the usual case
        groups = [by_prompt[prompt] for prompt in sorted(by_prompt)]
        return [group[0] for group in groups], groups
    firsts, groups = [], []
    rest = attrgetter("other_prompt", "classes", "completion")
    for prompt in sorted(by_prompt):
        same_prompt = by_prompt[prompt]
        if len(same_prompt) == 1:
            firsts.append(same_prompt[0])
            groups.append(same_prompt)
            continue
        keys = list(map(rest, same_prompt))
        if keys.count(keys[0]) == len(keys):  # repeats of one item
            firsts.append(same_prompt[0])
            groups.append(same_prompt)
            continue
        by_item: dict[tuple, list[Row]] = {}
        for key, row in zip(keys, same_prompt):
            by_item.setdefault(key, []).append(row)
        firsts.extend(group[0] for group in by_item.values())
        groups.extend(by_item.values())
    return firsts, groups


def default_max_tokens_per_pack(model) -> int:
    """The pack budget for the device the model is on."""
    return DEFAULT_MAX_TOKENS_PER_PACK.get(model.device.type, DEFAULT_MAX_TOKENS_PER_PACK["cpu"])


@dataclass
class ScoreStats:
    """Work counts: unique tokens actually computed against what one forward per option would run
    (``naive_tokens``), what lm-evaluation-harness's HF backend computes (``hf_tokens``: each
    row's context and option once, its last token left out, the one-token options of a context
    together) and the fewest any exact scorer can (``fewest_tokens``: the distinct prefixes, of
    the rows planned together); all known once every pack is planned. ``stack``: the prefix
    stack's budget and the prefixes it had to refuse."""

    items: int = 0
    sequences: int = 0
    packs: int = 0
    preface_tokens: int = 0
    unique_tokens: int = 0
    naive_tokens: int = 0
    answer_tokens: int = 0
    hf_tokens: int = 0
    stack: StackPlan | None = None

    @property
    def fewest_tokens(self) -> int | None:
        """The distinct prefixes of the rows planned (with the stack of shared prefixes only)."""
        return None if self.stack is None else self.preface_tokens + self.stack.fewest_tokens


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
    ``stacks``: prefixes shared by more rows than fit one pack are computed once and held on a stack
    of keys and values for every pack below them (see :func:`invscale.scoring.trie.build_packs`;
    streamed scoring holds them the same way, see :class:`~invscale.scoring.streamed.StreamedRunner`).
    The stack holds at most ``stack_tokens`` tokens (default: a share of the device's free memory,
    see :func:`invscale.scoring.runner.default_stack_tokens`, or of ``memory_budget`` when
    streaming); a prefix beyond that is computed in each of its packs, and ``stats.stack`` counts
    them. ``unconditional`` (each class's log-prob without the prompt, from
    :func:`unconditional_logprobs`) adds lm-eval's acc_mutual_info to classification rows.
    ``path``: ``trie``, ``cache`` or ``auto`` (see :mod:`invscale.scoring.paths`); ``self.path`` says
    which one runs and why, chosen before any work. On the cache path a pack is one context and its
    continuations (a :class:`~invscale.scoring.cache_runner.ContextBatch`).
    """

    def __init__(self, model, tokenizer, dataset: Dataset, max_tokens_per_pack: int | None = None,
                 backend: str = "auto", skip_indexes: frozenset[int] | set[int] = frozenset(),
                 kernels: str = "auto", streamed: StreamedModel | None = None, memory_budget: int | None = None,
                 on_layer: Callable[[int, int], None] | None = None, splice: bool = True,
                 chunk_rows: int = CHUNK_ROWS, group: Group = Group(), too_long: str = "error", stacks: bool = True,
                 stack_tokens: int | None = None, unconditional: dict[str, float] | None = None, path: str = "auto"):
        self.unconditional = unconditional
        self.requested_path, self.path = check_path(path), None
        with settled_heap():
            self._set_up(model, tokenizer, dataset, max_tokens_per_pack, backend, skip_indexes, kernels, streamed,
                         memory_budget, on_layer, splice, chunk_rows, group, too_long, stacks, stack_tokens)

    def _set_up(self, model, tokenizer, dataset, max_tokens_per_pack, backend, skip_indexes, kernels, streamed,
                memory_budget, on_layer, splice, chunk_rows, group, too_long, stacks, stack_tokens) -> None:
        self.stacks = stacks
        if streamed is not None:
            model = streamed.model
        self.model, self.dataset, self.chunk_rows = model, dataset, chunk_rows
        self.streamed, self.on_layer, self.stream_times, self.group = streamed, on_layer, None, group
        self.kernels = resolve_kernels(kernels, model.device)
        self.backend = resolve_backend(backend, model.device, self.kernels)
        self.max_tokens_per_pack = max_tokens_per_pack or default_max_tokens_per_pack(model)
        self.too_long = check_too_long(too_long)
        self._skip = skip_indexes
        self._aliases: dict[int, list[int]] = {}  # a packed sequence's id -> ids of the same pair in other items
        self._index_items(_items(dataset.rows))
        self.pairs = PairTokenizer(tokenizer, chain.from_iterable(self._item_contexts), splice=splice)
        eager = self._tokenize_whole_strings() if self.pairs.rule is None else None
        long_items = self._check_before_any_work(eager)  # (item, its whole sequences), scored apart or skipped
        self._long_rows = [(row, sequences) for number, sequences in long_items
                           for row in self.item_rows[number] if row.index not in skip_indexes]
        if long_items:
            kept = sorted(set(range(len(self.items))) - {number for number, _ in long_items})
            self._index_items(([self.items[n] for n in kept], [self.item_rows[n] for n in kept]))
        self._check_splice()
        self.preface = self.pairs.preface
        self._take_path(streamed)
        preface_once = self.path.name == "trie" or self.path.mode == "multi"
        self.stats = ScoreStats(items=int(self._pending_rows.sum()) + len(self._long_rows),
                                sequences=int((self._pending_rows * np.diff(self._first_sequence)).sum()),
                                preface_tokens=len(self.preface) if self._pending_rows.any() and preface_once else 0,
                                stack=StackPlan(stack_tokens if stack_tokens is not None
                                                else default_stack_tokens(model, streamed, memory_budget))
                                if self.stacks and self.path.name == "trie" else None)
        if streamed is not None and self.path.name == "trie":
            self.packs = self.plan()
            self.groups = plan_groups(streamed, len(self.preface), [p.n_tokens for p in self.packs], memory_budget,
                                      self.backend, [p.stack for p in self.packs], self.max_tokens_per_pack)

    def _take_path(self, streamed: StreamedModel | None) -> None:
        """On the cache path, measure the model's cache mode (:func:`~invscale.scoring.cache_runner.probe`);
        a streamed model runs its own forward there with each decoder layer's weights read just
        before the layer runs and freed after it."""
        if self.path.name != "cache":
            return
        if streamed is not None:
            streamed.load_layers_when_called()
        self.path = ScoringPath("cache", self.path.reason, probe(self.model))

    @property
    def too_long_rows(self) -> int:
        """Rows still to score that are too long for the model (skipped or truncated)."""
        return len(self._long_rows)

    def _index_items(self, items: tuple[list[Row], list[list[Row]]]) -> None:
        """Take ``items`` (each distinct item's first row, and all its rows; in packing order) as the
        items packed: their pairs, where each one's sequences start in the flat list of sequences,
        and how many of each item's rows are still to score."""
        self.items, self.item_rows = items
        task_type = self.dataset.task_type
        prompts = list(map(attrgetter("prompt"), self.items))
        if task_type in (TaskType.logodds, TaskType.absolute_logodds):
            self._item_contexts = list(zip(prompts, map(attrgetter("other_prompt"), self.items)))
        else:
            self._item_contexts = list(zip(prompts))
        if task_type is TaskType.sequence_prob:
            self._item_continuations = list(zip(map(attrgetter("completion"), self.items)))
        else:
            self._item_continuations = list(map(attrgetter("classes"), self.items))
        counts = np.fromiter(map(len, self._item_continuations), dtype=np.int64, count=len(self.items))
        counts *= np.fromiter(map(len, self._item_contexts), dtype=np.int64, count=len(self.items))
        self._first_sequence = np.concatenate([[0], np.cumsum(counts)])
        skip = self._skip
        self._pending_rows = np.fromiter((sum(row.index not in skip for row in rows) for rows in self.item_rows)
                                         if skip else map(len, self.item_rows), dtype=np.int64, count=len(self.items))
        self._owner_pending = np.zeros(int(self._first_sequence[-1]), dtype=bool)
        self._n_targets = np.zeros(int(self._first_sequence[-1]), dtype=np.int64)  # each sequence's scored tokens

    def _tokenize_whole_strings(self) -> list[tuple[tuple[int, ...], int]]:
        """No splice rule: tokenize every item now, and take their common token prefix as the preface;
        the whole sequences, in item order."""
        sequences = self.pairs.whole_sequences([pair for item in self.items
                                                for pair in continuations(item, self.dataset.task_type)])
        self.pairs.adopt_preface(common_prefix(tokens for tokens, _ in sequences))
        return sequences

    def _check_before_any_work(self, eager) -> list[tuple[int, list[ScoredSequence]]]:
        """Refuse, before the first pack, rows the model cannot score (continuations with no tokens,
        nothing to predict from) and architectures or features the scorer cannot score exactly; items
        too long for the model's positions or the architecture's limits are refused all at once
        (``too_long="error"``, every row named) or returned (their numbers and sequences)."""
        config = self.model.config
        max_positions = getattr(config, "max_position_embeddings", None)
        limit = max_sequence_length(config, self.requested_path)
        task_type = self.dataset.task_type
        self._check_targets()
        if eager is not None:  # every item is tokenized already
            exact = np.arange(len(self.items))
            sequences = [ScoredSequence(tokens, n) for tokens, n in eager]
            longest = 0
        else:  # upper bounds on token counts; items near a limit (or with tiny contexts) tokenized now
            rule = self.pairs.rule
            scale = 4 if rule.normalizes else 1  # normalizers may expand text (NFKC), never four-fold per byte
            longest_continuation = {own: max(map(_utf8_length, own)) for own in set(self._item_continuations)}
            columns = list(zip(*self._item_contexts)) or [()]  # the prompts (and the other prompts)
            chars = [np.fromiter(map(len, c), dtype=np.int64, count=len(self.items)) for c in columns]
            utf8 = [lengths if all(map(str.isascii, c)) else np.fromiter(map(_utf8_length, c), dtype=np.int64,
                                                                          count=len(self.items))
                    for c, lengths in zip(columns, chars)]
            shortest_context = np.minimum.reduce(chars)
            bound = len(rule.special_prefix) + 1 + scale * (np.maximum.reduce(utf8) + np.fromiter(
                map(longest_continuation.__getitem__, self._item_continuations), dtype=np.int64, count=len(self.items)))
            near = shortest_context <= SHORT_CONTEXT
            if limit is not None:
                near |= bound > limit
            exact = np.flatnonzero(near)
            longest = max(len(self.pairs.preface) + 1, int(bound[~near].max()) if (~near).any() else 0)
            sequences = self.pairs.sequences([pair for n in exact for pair in continuations(self.items[n], task_type)])
        exact_rows = [self.items[n] for n in exact]
        grouped = check_sequences(exact_rows, task_type, sequences, self.dataset.name, None)
        lengths = [max(len(s.tokens) for s in item_sequences) for item_sequences in grouped]
        long_items = [(int(n), item_sequences, length) for n, item_sequences, length in zip(exact, grouped, lengths)
                      if limit is not None and length > limit]
        if long_items and self.too_long == "error":
            longest_row = max(length for _, _, length in long_items)
            if max_positions is None or longest_row <= max_positions:  # the architecture's own limit: its reason
                choose_path(config, self.requested_path, longest_row)
            raise DataError(too_long_message(self.dataset.name, [(row.index, length) for n, _, length in long_items
                                                                 for row in self.item_rows[n]],
                                             limit_words(config, self.requested_path)))
        if self.too_long == "truncate-left":
            for n, item_sequences, _ in long_items:
                longest_target = max(s.n_target for s in item_sequences)
                if longest_target >= limit:
                    raise DataError(f"{self.dataset.name}: row {self.items[n].index + 1}: field "
                                    f"'{continuation_field(task_type)}': a continuation alone is {longest_target} "
                                    f"tokens; with --too-long truncate-left nothing of the prompt would be left "
                                    f"(the model takes {limit})")
        longest = max([longest] + [length for length in lengths if limit is None or length <= limit])
        self.path = choose_path(config, self.requested_path, longest)
        return [(n, item_sequences) for n, item_sequences, _ in long_items]

    def _check_splice(self) -> None:
        """Refuse the run, naming the row, if a checked pair's spliced tokens differ from its whole-string
        tokens (see :mod:`invscale.scoring.splice_check`); nothing to check without a splice rule."""
        rule = self.pairs.rule
        if rule is None or not self.items:
            return
        firsts = "".join(rule.added.firsts) if rule.added is not None else ""
        checks = chosen_checks(self._item_contexts, self._item_continuations, self.chunk_rows, firsts)
        wrong = self.pairs.first_differing([check[1:] for check in checks])
        if wrong is not None:
            number, _, context, continuation = checks[wrong]
            raise DataError(f"{self.dataset.name}: row {self.items[number].index + 1}: field "
                            f"'{continuation_field(self.dataset.task_type)}': {continuation!r} after its prompt is "
                            "tokenized otherwise in pieces than as one string; this tokenizer cannot be scored "
                            "exactly here (nothing was scored)")

    def _check_targets(self) -> None:
        """Every continuation has tokens of its own (its count is what is scored)."""
        counts = self.pairs.target_counts(chain.from_iterable(set(self._item_continuations)))
        empty = {k for k, n in counts.items() if n == 0}
        if empty:
            field_name = continuation_field(self.dataset.task_type)
            for item, own in zip(self.items, self._item_continuations):
                for continuation in own:
                    if continuation in empty:
                        raise DataError(f"{self.dataset.name}: row {item.index + 1}: field '{field_name}': "
                                        f"{continuation!r} has no tokens")

    def _check_predictable(self, ids: np.ndarray, lengths: np.ndarray, targets: np.ndarray) -> None:
        """A continuation whose tokens would be the whole sequence (no BOS, and a context that
        merged into it) has nothing to predict its first token: refused with the row named."""
        whole = np.flatnonzero(targets >= lengths)
        if whole.size:
            item = self.items[int(np.searchsorted(self._first_sequence, ids[whole[0]], side="right")) - 1]
            raise DataError(f"{self.dataset.name}: row {item.index + 1}: field "
                            f"'{continuation_field(self.dataset.task_type)}': the continuation would be the whole "
                            "sequence; nothing predicts its first token")

    def _sequence_sizes(self, units: list[Unit]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The packed sequences of ``units``: their ids, whole lengths, scored token counts and the
        lengths of their contexts."""
        per_unit = list(map(_SEQ_IDS, units))
        counts = np.fromiter(map(len, per_unit), dtype=np.int64, count=len(units))
        n = int(counts.sum())
        ids = np.fromiter(chain.from_iterable(per_unit), dtype=np.int64, count=n)
        stems = np.fromiter(map(len, map(_STEM, units)), dtype=np.int64, count=len(units))
        above = np.repeat(stems + len(self.preface), counts)
        lengths = above + np.fromiter(chain.from_iterable(unit.template.lengths for unit in units), dtype=np.int64,
                                      count=n)
        targets = np.fromiter(chain.from_iterable(unit.template.n_targets for unit in units), dtype=np.int64, count=n)
        return ids, lengths, targets, above

    def plan(self) -> list[Pack]:
        """Every pack of the job, built now (what :meth:`results` streams)."""
        return list(self.iter_packs())

    def iter_packs(self) -> Iterator[Pack]:
        """The packs that hold a row still to score, in order, a chunk of items tokenized, planned and
        built at a time (what :meth:`results` runs, on a background thread); on the cache path, runs
        of context batches (see :func:`~invscale.scoring.cache_runner.plan_contexts`). A pair
        repeated within a chunk (the same context and continuation in another item) is tokenized and
        packed once; the repeats are recorded as its aliases."""
        with settled_heap():
            yield from self._chunk_packs()

    def _chunk_packs(self) -> Iterator[Pack]:
        held: list[Unit] = []
        stats = self.stats  # counted afresh by every planning pass
        stats.naive_tokens = stats.answer_tokens = stats.hf_tokens = 0
        if stats.stack is not None:
            stats.stack = StackPlan(stats.stack.budget_tokens)
        weights = np.repeat(self._pending_rows, np.diff(self._first_sequence))  # naive runs of each sequence
        for start in range(0, len(self.items), self.chunk_rows):
            stop = min(start + self.chunk_rows, len(self.items))
            first, last = int(self._first_sequence[start]), int(self._first_sequence[stop])
            ordered, own, seq_ids, owner_of = self._chunk_contexts(start, stop, first)
            for same in np.flatnonzero(owner_of != np.arange(first, last)).tolist():
                self._aliases.setdefault(int(owner_of[same]), []).append(first + same)
            found = self.pairs.contexts(ordered, own)
            units = self._units(found, seq_ids)
            ids, lengths, targets, context_lengths = self._sequence_sizes(units)
            self._check_predictable(ids, lengths, targets)
            self._n_targets[ids] = targets
            self._n_targets[first:last] = self._n_targets[owner_of]  # a repeated pair: its owner's count
            np.logical_or.at(self._owner_pending, owner_of, weights[first:last] > 0)
            owner_weights = np.bincount(owner_of - first, weights=weights[first:last], minlength=last - first)
            sequence_weights = owner_weights[ids - first]
            self.stats.naive_tokens += int((sequence_weights * lengths).sum())
            self.stats.answer_tokens += int((sequence_weights * targets).sum())
            self.stats.hf_tokens += int((sequence_weights * hf_inputs(units, lengths, context_lengths)).sum())
            if self.path.name == "cache":  # runs of contexts (lists of batches), not packs
                yield from plan_contexts(self.path.mode, self.preface,
                                         ((tokens.stem, tokens.junctions, ids) for tokens, ids in zip(found, seq_ids)),
                                         lambda ids: self._owner_pending[ids].any())
                continue
            packs, held = build_packs(held + units, self.max_tokens_per_pack, self.preface,
                                      keep_last=stop < len(self.items), stacks=self.stacks, plan=self.stats.stack)
            yield from (pack for pack in packs if self._owner_pending[pack.seq_ids].any())

    def _chunk_contexts(self, start: int, stop: int, first: int):
        """The distinct contexts of items ``start:stop`` in text order, each one's distinct
        continuations and their sequence ids, and each sequence's owner (the first sequence of the
        same pair; itself unless the pair was seen before in the chunk)."""
        item_contexts, item_continuations = self._item_contexts[start:stop], self._item_continuations[start:stop]
        flat = list(chain.from_iterable(item_contexts))
        if len(set(flat)) == len(flat):  # no context repeats (the usual case): every pair is its own owner
            own = list(chain.from_iterable([k] * len(c) for c, k in zip(item_contexts, item_continuations)))
            counts = list(map(len, own))
            seq_starts = accumulate(counts, initial=first)
            seq_ids = [list(range(s, s + n)) for s, n in zip(seq_starts, counts)]
            order = sorted(range(len(flat)), key=flat.__getitem__)
            owner_of = np.arange(first, first + sum(counts), dtype=np.int64)
            return [flat[i] for i in order], [own[i] for i in order], [seq_ids[i] for i in order], owner_of
        by_context: dict[str, dict[str, int]] = {}
        owner_of, seq_id = [], first
        for own_contexts, own in zip(item_contexts, item_continuations):
            for context in own_contexts:  # in the order of :func:`continuations`
                owners = by_context.get(context)
                if owners is None:
                    owners = by_context[context] = {}
                for continuation in own:
                    owner_of.append(owners.setdefault(continuation, seq_id))
                    seq_id += 1
        ordered = sorted(by_context)
        return (ordered, [tuple(by_context[c]) for c in ordered], [list(by_context[c].values()) for c in ordered],
                np.array(owner_of, dtype=np.int64))

    def _units(self, found: list[ContextTokens], seq_ids: list[list[int]]) -> list[Unit]:
        """The units of tokenized contexts, ``seq_ids[i]`` the sequence ids of context ``i``'s
        continuations; a context whose continuations hold more unique tokens than half a pack is split."""
        units, half = [], max(self.max_tokens_per_pack // 2, 1)
        for tokens, ids in zip(found, seq_ids):
            junctions = tokens.junctions
            whole = template(junctions)
            if whole.size > half and len(junctions) > 1:
                start, hint, first_part = 0, tokens.hint, len(units)
                while start < len(junctions):
                    stop, size = start, 0
                    while stop < len(junctions) and (stop == start or size + len(junctions[stop][0]) <= half):
                        size += len(junctions[stop][0])
                        stop += 1
                    units.append(Unit(tokens.stem, hint, template(junctions[start:stop]), ids[start:stop]))
                    start, hint = stop, len(tokens.stem)
                if self.stats.stack is not None:  # the parts' shared first tokens are no more distinct prefixes
                    self.stats.stack.fewest_tokens -= sum(unit.template.size for unit in units[first_part:]) - whole.size
            else:
                units.append(Unit(tokens.stem, tokens.hint, whole, ids))
        return units

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
        limit = max_sequence_length(self.model.config, self.requested_path)
        if self.too_long == "skip":
            for row, sequences in self._long_rows:
                yield {"index": row.index, "skipped": skipped_reason(max(len(s.tokens) for s in sequences),
                                                                     self.model.config, self.requested_path)}
        else:
            flat = [(s.tokens[-limit:], s.n_target) for _, sequences in self._long_rows for s in sequences]
            logprobs, _ = score_token_sequences(self.model, flat, self.max_tokens_per_pack, self.backend, self.kernels,
                                                path=self.path.name, mode=self.path.mode)
            cursor = 0
            for row, sequences in self._long_rows:
                row_logprobs = logprobs[cursor:cursor + len(sequences)]
                cursor += len(sequences)
                dropped = max(len(s.tokens) for s in sequences) - limit
                yield {**example_metrics(self.dataset.task_type, row, row_logprobs, self.unconditional,
                                         [s.n_target for s in sequences]),
                       "truncated": truncated_note(dropped)}
        if on_pack is not None:
            on_pack(len(self._long_rows), 0)

    def _packed_results(self, on_pack: Callable[[int, int], None] | None) -> Iterator[dict]:
        if not self._pending_rows.any():
            return
        first, skip, task_type = self._first_sequence, self._skip, self.dataset.task_type
        owner = np.repeat(np.arange(len(self.items)), np.diff(first)).tolist()
        remaining = np.where(self._pending_rows > 0, np.diff(first), -1).tolist()  # done items never finish again
        logprobs = np.zeros(int(first[-1]), dtype=np.float64)
        self.stats.unique_tokens = self.stats.preface_tokens
        if self.path.name == "cache":
            passes = self._cache_passes()
        else:
            passes = self._streamed_passes() if self.streamed is not None else self._resident_passes()
        held = ()
        for pack, launched in passes:
            sums = pack.sequence_sums(launched.double().cpu().numpy())
            self.stats.unique_tokens += pack.n_tokens + stack_growth(held, pack.stack)
            held = pack.stack
            self.stats.packs += 1
            finished = []
            for seq_id, value in zip(pack.seq_ids.tolist(), sums.tolist()):
                for same in (seq_id, *self._aliases.pop(seq_id, ())):
                    logprobs[same] = value
                    item = owner[same]
                    remaining[item] -= 1
                    if remaining[item] == 0:
                        finished.append(item)
            rows = 0
            for item in finished:
                item_logprobs = logprobs[first[item]:first[item + 1]].tolist()
                item_tokens = self._n_targets[first[item]:first[item + 1]].tolist()
                for row in self.item_rows[item]:
                    if row.index not in skip:
                        rows += 1
                        yield example_metrics(task_type, row, item_logprobs, self.unconditional, item_tokens)
            if on_pack is not None:
                on_pack(rows, pack.n_tokens)

    def _resident_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) with the whole model resident, one forward pass per pack (this
        process's share of them under torchrun, the others' received)."""
        with PackRunner(self.model, backend=self.backend, kernels=self.kernels,
                        push_tokens=self.max_tokens_per_pack) as runner:
            runner.set_preface(self.preface)
            yield from self.group.passes(stack_units(self._packs_beside()),
                                         lambda unit: [runner.pair_logprobs(pack) for pack in unit])

    def _cache_passes(self) -> Iterator[tuple[ContextBatch, torch.Tensor]]:
        """(context batch, its sequences' summed log-probs) by the model's own forward and cache, the
        preface computed once where the mode allows (under torchrun, runs of contexts dealt out as
        packs are)."""
        with CacheRunner(self.model, self.path.mode) as runner:
            runner.set_preface(self.preface)
            yield from self.group.passes(self._packs_beside(), lambda run: [runner.run(batch)[0] for batch in run])

    def _streamed_passes(self) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) streaming the layers once per group of packs (under torchrun,
        groups are dealt out among the processes)."""
        runner = StreamedRunner(self.streamed, backend=self.backend, kernels=self.kernels, on_layer=self.on_layer,
                                push_tokens=self.max_tokens_per_pack)
        self.stream_times = runner.times
        yield from self.group.passes(([self.packs[i] for i in group] for group in self.groups),
                                     lambda packs: runner.run(self.preface, packs))


def stack_units(packs: Iterable[Pack]) -> Iterator[list[Pack]]:
    """The units torchrun deals out: each run of consecutive packs under one bottom segment of the
    prefix stack together (one process then computes that prefix, once), every other pack alone."""
    for _, run in groupby(packs, key=lambda pack: pack.stack[0] if pack.stack else object()):
        yield list(run)


def hf_inputs(units: list[Unit], lengths: np.ndarray, context_lengths: np.ndarray) -> np.ndarray:
    """Per packed sequence, the tokens lm-evaluation-harness's HF backend runs for it: the whole
    sequence but its last token, except that the one-token continuations of one context share a
    single run of the context (its logits cache), counted on the first of them."""
    unit_of = np.repeat(np.arange(len(units)), [len(ids) for ids in map(_SEQ_IDS, units)])
    one_token = lengths - context_lengths == 1
    inputs = np.where(one_token, 0, lengths - 1)
    singles = np.flatnonzero(one_token)
    firsts = singles[np.unique(unit_of[singles], return_index=True)[1]]
    inputs[firsts] = context_lengths[firsts]
    return inputs


def check_too_long(choice: str) -> str:
    """``choice`` if it is one of :data:`TOO_LONG`, else ValueError in one line."""
    if choice not in TOO_LONG:
        raise ValueError(f"--too-long {choice}: choose one of {', '.join(TOO_LONG)}")
    return choice


def max_sequence_length(config, path: str = "auto") -> int | None:
    """The longest sequence the model scores exactly on ``path`` (see :func:`~invscale.scoring.paths.sequence_limit`)."""
    return sequence_limit(config, path)


def limit_words(config, path: str = "auto") -> str:
    """What limits a sequence's length, in words: the model's positions, or the architecture's."""
    limit, positions = max_sequence_length(config, path), getattr(config, "max_position_embeddings", None)
    if limit == positions:
        return f"the model's {positions} positions"
    return f"{limit} tokens, up to which this architecture is scored exactly"


def skipped_reason(length: int, config, path: str = "auto") -> str:
    """The ``skipped`` column of a row of ``length`` tokens too long for the model."""
    return f"{length} tokens, more than {limit_words(config, path)}"


def truncated_note(dropped: int) -> str:
    """The ``truncated`` column of a row scored with its ``dropped`` oldest prompt tokens left out."""
    return f"{dropped} oldest prompt tokens dropped"


def too_long_message(source: str, rows: list[tuple[int, int]], limit: str) -> str:
    """One line naming every row (index, tokens) longer than ``limit`` (in words) and the choices left."""
    numbers = sorted(index + 1 for index, _ in rows)
    shown = ", ".join(map(str, numbers[:20])) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
    return (f"{source}: {'rows' if len(rows) > 1 else 'row'} {shown}: field 'prompt': context + continuation is up to "
            f"{max(length for _, length in rows)} tokens, more than {limit}; --too-long skip scores the other rows, "
            f"--too-long truncate-left drops the oldest prompt tokens")


def score_token_sequences(model, sequences: list[tuple[tuple[int, ...], int]], max_tokens_per_pack: int | None = None,
                          backend: str = "auto", kernels: str = "auto",
                          on_pack: Callable[[int], None] | None = None, path: str = "auto",
                          mode: str | None = None) -> tuple[list[float], list[bool]]:
    """For token sequences given as (tokens, n_target): the summed log-prob of each one's last
    ``n_target`` tokens and whether each of those tokens is the argmax of its prediction, from one
    trie run (the preface is the tokens every sequence shares, every other shared prefix is computed
    once on the packs' stack; a repeated sequence runs once). What lm-evaluation-harness's
    ``loglikelihood`` asks, for requests it has tokenized itself. ``on_pack(n)`` is called after
    each pack with the number of the given sequences it finished. ``path``: as for
    :class:`ScoringJob` (on the cache path, ``mode`` when the caller probed the model already; a
    pack is then one context's sequences)."""
    if not sequences:
        return [], []
    chosen = choose_path(model.config, path, max(len(tokens) for tokens, _ in sequences))
    kernels = resolve_kernels(kernels, model.device)
    preface = common_prefix(tokens for tokens, _ in sequences)
    distinct = {}
    for number, (tokens, n_target) in enumerate(sequences):
        if n_target < 1 or n_target >= len(tokens):
            raise ValueError(f"sequence {number}: {n_target} scored tokens of {len(tokens)}; nothing would predict "
                             "the first")
        distinct.setdefault((tokens, n_target), len(distinct))
    refs = [SequenceRef(number, tokens[len(preface):], n_target) for (tokens, n_target), number in distinct.items()]
    units = units_of_sequences(refs)
    logprobs, greedy = np.zeros(len(distinct)), np.zeros(len(distinct), dtype=bool)
    repeats = np.bincount([distinct[key] for key in sequences], minlength=len(distinct))  # sequences per distinct one
    if chosen.name == "cache":
        runner = CacheRunner(model, mode)  # probes the model's cache when no mode is given
        mode = runner.mode
        contexts = ((unit.stem, [(refs[i].tokens[len(unit.stem):], refs[i].n_target) for i in unit.seq_ids],
                     unit.seq_ids) for unit in units)
        packs = chain.from_iterable(plan_contexts(mode, preface, contexts, lambda ids: True))
        score = runner.run
    else:
        budget = max_tokens_per_pack or default_max_tokens_per_pack(model)
        packs, _ = build_packs(units, budget, preface, stacks=True, plan=StackPlan(default_stack_tokens(model)))
        runner = PackRunner(model, backend=resolve_backend(backend, model.device, kernels), kernels=kernels,
                            push_tokens=budget)
        score = partial(runner.pair_logprobs, with_greedy=True)
    with runner:
        runner.set_preface(preface)
        for pack in packs:
            pair_logprobs, pair_greedy = score(pack)
            logprobs[pack.seq_ids] = pack.sequence_sums(pair_logprobs.double().cpu().numpy())
            greedy[pack.seq_ids] = pack.sequence_all(pair_greedy.cpu().numpy())
            if on_pack is not None:
                on_pack(int(repeats[pack.seq_ids].sum()))
    order = [distinct[key] for key in sequences]
    return logprobs[order].tolist(), greedy[order].tolist()


def unconditional_logprobs(model, tokenizer, texts: Iterable[str], max_tokens_per_pack: int | None = None,
                           backend: str = "auto", kernels: str = "auto", path: str = "auto") -> dict[str, float]:
    """Each text's log-prob with no prompt, as lm-evaluation-harness computes it for acc_mutual_info:
    after the tokenizer's prefix token alone (BOS, else EOS), the text encoded without special tokens
    (its first token standing in for the prefix when it is that token); one run for them all, on ``path``."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    texts = list(dict.fromkeys(texts))
    sequences = []
    for text in texts:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens = [prefix, *encoded] if encoded[0] != prefix else encoded
        sequences.append((tuple(tokens), len(tokens) - 1))
    logprobs, _ = score_token_sequences(model, sequences, max_tokens_per_pack, backend, kernels, path=path)
    return dict(zip(texts, logprobs))
