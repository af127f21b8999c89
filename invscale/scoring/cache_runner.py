"""The cache path: continuations scored by the model's own forward and its own cache.

For every causal LM the trie cannot serve (attention outside transformers' interface, ALiBi,
state-space and recurrent layers, hybrids, an architecture newer than invscale's tests), the model
computes every token itself, as a plain forward pass would, and only the order of the work
changes: the run's shared preface is computed once, each context once after a copy of the
preface's cache, and the context's continuations together, as a batch, from copies of the
context's cache (keys and values, or the state of recurrent and state-space layers). A
continuation's padding comes after its own tokens, so no scored token ever sees it. Neighbouring
contexts (in text order) that share a long prefix beyond the preface (a subject's few-shot
examples) form a run: that shared segment is computed once, after the preface, and each context
of the run continues from a copy of its cache (:func:`plan_contexts`). Where each context starts
is fixed by the plan alone, so a resumed run, or one dealt out among processes, computes every
token as an uninterrupted one does.

How far a model's cache may be trusted is measured on the model itself before any work
(:func:`probe`), on random tokens, against its plain forward pass: ``multi`` (contexts and
continuations of many tokens after a cache), else ``step`` (the context from scratch, each
continuation one token per forward, as ``generate`` feeds it), else ``plain`` (one plain forward
per sequence: the reference itself). So a new architecture is scored exactly, never refused.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from invscale.kernels import cpu_linear
from invscale.scoring.runner import linear_pack_budget
from invscale.scoring.trie import common_prefix_length

MODES = ("multi", "step", "plain")
PROBE_TOKENS = 24  # random tokens the probe runs: past a conformance test's windows (8), cheap on any model
PROBE_VOCABULARY = 256  # drawn from the first token ids, which every vocabulary (and per-layer input table) has
# largest |log-prob difference| from the plain forward the probe accepts: far above rounding, far
# below what a cache that loses or misplaces tokens gives (1e-1 and more)
PROBE_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
PROBE_TOLERANCE_HALF = 5e-2
# where transformers hands a model's cache in and out, newest name first (rwkv calls it its state)
CACHE_NAMES = ("cache", "past_key_values", "state", "cache_params")
# a run of neighbouring contexts shares a segment of at least this many tokens beyond the preface,
# and a context joins a run only if the segment keeps at least half its length
MIN_SEGMENT = 16


@dataclass(frozen=True)
class ContextBatch:
    """One context and its continuations, as the cache path runs them: ``stem`` (tokens after the
    preface every sequence shares), per sequence its tokens after the stem and how many of the
    whole sequence's last tokens are scored, and the sequences' ids. ``segment``: how many of the
    context's first tokens (preface included) it shares with its run, computed once for the run (0:
    none). ``n_tokens``: the tokens the runner computes for it (see :func:`plan_contexts`). Its
    scores come back per sequence, so :meth:`sequence_sums` is the identity (the interface results
    are read through)."""

    stem: tuple[int, ...]
    junctions: tuple[tuple[tuple[int, ...], int], ...]
    seq_ids: np.ndarray
    n_tokens: int
    segment: int = 0
    stack: tuple = ()

    @staticmethod
    def sequence_sums(values: np.ndarray) -> np.ndarray:
        """Per sequence summed log-probs: what the cache path returns already."""
        return values

    @staticmethod
    def sequence_all(values: np.ndarray) -> np.ndarray:
        """Per sequence whether every scored token was the argmax: what the cache path returns already."""
        return values


def cache_argument(model) -> str | None:
    """The keyword the model's forward takes its cache by (None: it takes none)."""
    parameters = inspect.signature(model.forward).parameters
    return next((name for name in CACHE_NAMES if name in parameters), None)


def fork(cache, copies: int, device: torch.device):
    """A copy of ``cache`` for ``copies`` sequences (the original untouched): a transformers Cache
    of plain key/value layers copied in structure alone (they grow by concatenation, never in
    place), any other deep-copied; then repeated along the batch by the cache's own methods; nested
    tensors repeated along their first dimension."""
    if cache is None:
        return None
    if _plain_layers(cache):
        forked = copy.copy(cache)
        forked.layers = [copy.copy(layer) for layer in cache.layers]
        if copies != 1:
            forked.batch_repeat_interleave(copies)
        return forked
    if hasattr(cache, "reorder_cache"):
        forked = copy.deepcopy(cache)
        if copies != 1:
            forked.reorder_cache(torch.zeros(copies, dtype=torch.long, device=device))
        return forked
    if isinstance(cache, torch.Tensor):
        return cache.repeat_interleave(copies, dim=0) if copies != 1 else cache.clone()
    if isinstance(cache, (list, tuple)):
        return type(cache)(fork(part, copies, device) for part in cache)
    raise TypeError(f"cannot copy a cache of type {type(cache).__name__}")


def select(cache, index: torch.Tensor):
    """``cache`` with only the batch rows at ``index`` (a Cache changed in place by its own
    ``reorder_cache``; nested tensors indexed along their first dimension)."""
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    if isinstance(cache, torch.Tensor):
        return cache.index_select(0, index.to(cache.device))
    if isinstance(cache, (list, tuple)):
        return type(cache)(select(part, index) for part in cache)
    raise TypeError(f"cannot select rows of a cache of type {type(cache).__name__}")


def _plain_layers(cache) -> bool:
    """Whether every layer of ``cache`` is transformers' plain growing key/value layer."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return isinstance(layers, list) and bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def split(preface: tuple[int, ...], stem: tuple[int, ...], junctions):
    """Where the context run shared by all of a context's sequences ends (at the first scored token
    of any of them, at most after the stem), each whole sequence, and the tokens each one feeds
    after that run (its last token predicts nothing, so it is never fed)."""
    shared = len(preface) + len(stem)
    whole = [(*preface, *stem, *tokens) for tokens, _ in junctions]
    prefix = min([shared] + [len(sequence) - n_target for sequence, (_, n_target) in zip(whole, junctions)])
    return prefix, whole, [sequence[prefix:len(sequence) - 1] for sequence in whole]


def context_batch(mode: str, preface: tuple[int, ...], stem: tuple[int, ...], junctions, seq_ids,
                  segment: int = 0) -> ContextBatch:
    """A context's :class:`ContextBatch`, with the tokens a runner in ``mode`` computes for it (in
    ``multi`` the preface's are computed once for the run, and a ``segment``'s once for its run of
    contexts, not here)."""
    prefix, whole, rows = split(preface, stem, junctions)
    if mode == "plain":
        tokens = sum(len(sequence) - 1 for sequence in whole)
    else:
        held = segment or (len(preface) if mode == "multi" and preface and prefix >= len(preface) else 0)
        tokens = prefix - held + sum(map(len, rows))
    return ContextBatch(tuple(stem), tuple(junctions), np.asarray(seq_ids, dtype=np.int64), tokens, segment)


def plan_contexts(mode: str, preface: tuple[int, ...], contexts, pending) -> Iterator[list[ContextBatch]]:
    """The batches of ``contexts`` ((stem, junctions, seq_ids), in text order) in runs: in ``multi``,
    neighbours whose prefixes share a segment of :data:`MIN_SEGMENT` tokens or more beyond the
    preface (a context joins while the segment keeps half its length) are one run, the segment's
    tokens counted on its first batch; each run holds the batches whose ``pending(seq_ids)`` is
    true, and runs with none are left out. Every run is a unit torchrun deals out whole."""
    run, segment_tokens = [], ()
    for stem, junctions, seq_ids in contexts:
        prefix, whole, _ = split(preface, stem, junctions)
        tokens = whole[0][:prefix]
        if run:
            common = common_prefix_length(segment_tokens, tokens)
            if mode == "multi" and common - len(preface) >= MIN_SEGMENT and 2 * common >= len(segment_tokens):
                run.append((stem, junctions, seq_ids))
                segment_tokens = segment_tokens[:common]
                continue
            yield from _close(mode, preface, run, segment_tokens, pending)
        run, segment_tokens = [(stem, junctions, seq_ids)], tokens
    if run:
        yield from _close(mode, preface, run, segment_tokens, pending)


def _close(mode, preface, run, segment_tokens, pending) -> Iterator[list[ContextBatch]]:
    segment = len(segment_tokens) if len(run) > 1 else 0
    batches = [context_batch(mode, preface, stem, junctions, seq_ids, segment)
               for stem, junctions, seq_ids in run if pending(seq_ids)]
    if batches:
        if segment:
            batches[0] = replace(batches[0], n_tokens=batches[0].n_tokens + segment - len(preface))
        yield batches


class CacheRunner:
    """Summed log-probs (and all-greedy flags) of sequences, computed by the model's own forward and
    cache in ``mode`` (one of :data:`MODES`; measured by :meth:`probe` when None)."""

    def __init__(self, model: torch.nn.Module, mode: str | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.argument = cache_argument(model)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.preface: tuple[int, ...] = ()
        self._preface_cache = None
        self._preface_last: torch.Tensor | None = None  # [V] log-probs after the preface's last token
        self._segment: tuple | None = None  # (tokens, log-probs after them, cache) of the run's segment
        self.mode = mode or self.probe()
        self._restore_linears = cpu_linear.route(model, linear_pack_budget(self.device))

    def close(self) -> None:
        """Give the model its own linear layers back and drop the preface's cache."""
        self._restore_linears()
        self._preface_cache = self._preface_last = self._segment = None

    def __enter__(self) -> "CacheRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def preface_cache(self):
        """The cache after the preface (multi mode; None otherwise), to be copied, never fed."""
        return self._preface_cache

    def _forward(self, ids: torch.Tensor, cache=None, keep_cache: bool = True, last_only: bool = False, **inputs):
        """(log-probs [B, L, V] in fp32, the cache after ``ids``) for a batch after ``cache``; with
        ``last_only``, of the last position alone ([B, 1, V]: the head skips the others where the
        model's forward takes ``logits_to_keep``); ``inputs`` (an attention mask, position ids)
        passed on."""
        kwargs = {"use_cache": keep_cache, **inputs}
        if cache is not None:
            kwargs[self.argument] = cache
        if last_only and self._keeps_logits:
            kwargs["logits_to_keep"] = 1
        output = self.model(input_ids=ids.to(self.device), **kwargs)
        after = None
        if keep_cache:
            after = next((output[name] for name in CACHE_NAMES if name in output and output[name] is not None), None)
        logits = output.logits[:, -1:] if last_only else output.logits
        return logits.float().log_softmax(-1), after

    @torch.no_grad()
    def set_preface(self, tokens: tuple[int, ...]) -> None:
        """Take ``tokens`` as the preface every sequence starts with; in multi mode, compute and keep
        its cache (the other modes run each context whole)."""
        self.preface, self._preface_cache, self._preface_last, self._segment = tuple(tokens), None, None, None
        if tokens and self.mode == "multi":
            logprobs, self._preface_cache = self._forward(torch.tensor([tokens]), last_only=True)
            self._preface_last = logprobs[0, -1]

    @torch.no_grad()
    def run(self, batch: ContextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed log-prob [S] fp64, all-greedy [S] bool) of every sequence of ``batch``."""
        prefix, whole, rows = split(self.preface, batch.stem, batch.junctions)
        targets = [n_target for _, n_target in batch.junctions]
        if self.mode == "plain":
            scored = [self._score_plain(sequence, n) for sequence, n in zip(whole, targets)]
        else:
            last, cache = self._prefix(whole[0][:prefix], batch.segment)
            scored = self._score_after(last, cache, prefix, rows, whole, targets)
        sums, greedy = zip(*scored)
        return torch.tensor(sums, dtype=torch.float64), torch.tensor(greedy, dtype=torch.bool)

    def _prefix(self, tokens: tuple[int, ...], segment: int = 0):
        """(log-probs after the last of ``tokens``, the cache after them): from a copy of the cache
        of their first ``segment`` tokens (computed once for the run), else of the preface's when
        ``tokens`` extend it, else from scratch. A held cache may be returned as it is:
        :meth:`_score_after` copies before it feeds anything."""
        if segment:
            if self._segment is None or self._segment[0] != tokens[:segment]:
                self._segment = (tokens[:segment], *self._prefix(tokens[:segment]))
            _, last, cache = self._segment
            return self._continue(tokens, segment, last, cache)
        if self._preface_cache is not None and len(tokens) >= len(self.preface):
            return self._continue(tokens, len(self.preface), self._preface_last, self._preface_cache)
        return self._continue(tokens, 0, None, None)

    def _continue(self, tokens: tuple[int, ...], start: int, last, cache):
        """(log-probs after ``tokens``, the cache after them), given ``last`` and ``cache`` after their
        first ``start`` tokens (returned as they are when nothing follows; copied before a forward)."""
        if len(tokens) == start:
            return last, cache
        logprobs, cache = self._forward(torch.tensor([tokens[start:]]), fork(cache, 1, self.device), last_only=True)
        return logprobs[0, -1], cache

    def _score_after(self, last, cache, prefix, rows, whole, targets):
        """(sum, all greedy) of each sequence, whose first ``prefix`` tokens left ``cache`` and the
        log-probs ``last``, its ``rows`` tokens fed after them: all at once (multi), or one token
        per forward (step); a shorter row padded after its own tokens."""
        fed = [number for number, row in enumerate(rows) if row]
        outputs: dict[int, torch.Tensor] = {}
        if fed:
            width = max(len(rows[number]) for number in fed)
            ids = torch.tensor([list(rows[n]) + [rows[n][-1]] * (width - len(rows[n])) for n in fed])
            copies = fork(cache, len(fed), self.device)
            if self.mode == "multi":
                logprobs, _ = self._forward(ids, copies, keep_cache=False)
            else:
                steps = []
                for column in range(width):
                    step, copies = self._forward(ids[:, column:column + 1], copies)
                    steps.append(step)
                logprobs = torch.cat(steps, dim=1)
            outputs = {number: logprobs[row] for row, number in enumerate(fed)}
        scored = []
        for number, (sequence, n_target) in enumerate(zip(whole, targets)):
            after = outputs.get(number)
            predictors = last[None] if after is None else torch.cat([last[None], after[:len(rows[number])]])
            first = len(sequence) - n_target - prefix  # row of the first scored token's predictor
            scored.append(_sum_and_greedy(predictors[first:first + n_target], sequence[len(sequence) - n_target:]))
        return scored

    def _score_plain(self, sequence: tuple[int, ...], n_target: int):
        logprobs, _ = self._forward(torch.tensor([sequence[:-1]]), keep_cache=False)
        return _sum_and_greedy(logprobs[0, len(sequence) - 1 - n_target:], sequence[len(sequence) - n_target:])

    @torch.no_grad()
    def probe(self) -> str:
        """The first of :data:`MODES` in which this model's cached forward gives its plain forward's
        scores on random tokens: two sequences after one context, one padded after its own tokens;
        in ``multi``, the context itself continued from a cache first."""
        if self.argument is None:
            return "plain"
        vocabulary = min(self.model.get_input_embeddings().num_embeddings, PROBE_VOCABULARY)
        ids = torch.randint(0, vocabulary, (PROBE_TOKENS,), generator=torch.Generator().manual_seed(0)).tolist()
        tolerance = PROBE_TOLERANCE.get(next(self.model.parameters()).dtype, PROBE_TOLERANCE_HALF)
        reference, _ = self._forward(torch.tensor([ids]), keep_cache=False)
        whole, targets = [tuple(ids), tuple(ids[:PROBE_TOKENS // 2 + 3])], [PROBE_TOKENS // 2, 3]
        want = [_sum_and_greedy(reference[0, len(s) - n - 1:len(s) - 1], s[len(s) - n:])[0]
                for s, n in zip(whole, targets)]
        for mode in MODES[:2]:
            self.mode = mode
            try:
                self.set_preface(tuple(ids[:PROBE_TOKENS // 4]))
                prefix, _, rows = split(self.preface, tuple(ids[PROBE_TOKENS // 4:PROBE_TOKENS // 2]),
                                        [(s[PROBE_TOKENS // 2:], n) for s, n in zip(whole, targets)])
                last, cache = self._prefix(whole[0][:prefix])
                got = self._score_after(last, cache, prefix, rows, whole, targets)
            except (TypeError, ValueError, RuntimeError, AttributeError, IndexError, NotImplementedError):
                continue  # a cache this model's code cannot continue from
            finally:
                self.set_preface(())
            if all(abs(a - b) <= tolerance * n for (a, _), b, n in zip(got, want, targets)):
                return mode
        return "plain"


def probe(model) -> str:
    """The cache mode this model is scored in (see :meth:`CacheRunner.probe`)."""
    with CacheRunner(model, mode="plain") as runner:
        return runner.probe()


def _sum_and_greedy(logprobs: torch.Tensor, targets) -> tuple[float, bool]:
    """Summed log-prob of ``targets`` under rows of ``logprobs`` [n, V], and whether each is the argmax."""
    index = torch.tensor(targets, device=logprobs.device)
    picked = logprobs.gather(1, index[:, None])[:, 0]
    return float(picked.double().sum()), bool((logprobs.argmax(-1) == index).all())
