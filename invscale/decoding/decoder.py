"""The generation loop: prompts after a shared preface, each sample's tokens until a stop.

The run's preface is computed once (its cache kept by :class:`CacheRunner`); a batch of prompts
continues from copies of it in one forward, each prompt's samples continue from copies of the
prompt's cache, and then every unfinished sample advances one token per forward; a finished
sample leaves the batch at once (its rows dropped from the cache), so the batch never computes
tokens nobody keeps.

Prompts of different lengths share a batch only where the model is proved, on itself, to give
them exactly what it gives each alone (:meth:`Decoder.probe_padding`): the shorter prompts are
padded between the preface and their own tokens, the padding masked out and every token given its
own position. Models with windowed attention (the padding would move a window's edge), and models
whose cache the probe does not trust, run one prompt per batch (its samples together, which need
no padding). A model whose cache advances only one token per forward (``step``) computes each
prompt from scratch; one without a usable cache (``plain``) runs each step as a plain forward of
the whole sequence. So every architecture that can be scored can also generate.

This loop is invscale's own rather than ``model.generate``: ``generate`` cannot continue a batch
of ragged prompts from one shared preface cache, nor draw each sample from its own seed (its
draws depend on batch layout), nor drop a finished sample from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from invscale.decoding.sampling import next_tokens, sample_stream
from invscale.decoding.settings import DecodingSettings
from invscale.decoding.stops import StopFinder, decoded
from invscale.scoring.cache_runner import PROBE_TOLERANCE, PROBE_TOLERANCE_HALF, CacheRunner, fork, select
from invscale.scoring.trie import common_prefix

STOPS = ("eos", "stop", "budget")  # why a sample ended
PAD = 0  # the token id put where a shorter prompt is padded (masked out: never seen)


@dataclass(frozen=True)
class Generation:
    """One sample: the ``tokens`` kept (those wholly before a stop string, the EOS token left out),
    its ``text`` (the decoded text up to the stop string's start, as lm-evaluation-harness cuts it:
    a token that straddles the stop gives its part before it), why it ended (``stop``: one of :data:`STOPS`), the stop string it met, and how many
    tokens the model wrote (``generated``: kept, cut and EOS alike; ``written``: those tokens, EOS
    aside)."""

    tokens: tuple[int, ...]
    text: str
    stop: str
    stop_string: str | None
    generated: int
    written: tuple[int, ...] = ()  # every token the model wrote but EOS (a stop string's included)


def windowed(config) -> bool:
    """Whether some layer attends within a window or chunk (padding inside a sequence would move
    its edge)."""
    from invscale.scoring.architectures import sliding_window_in_use

    return sliding_window_in_use(config) or any(getattr(config, name, None) is not None
                                                for name in ("window_size", "attention_chunk_size"))


def eos_ids(model, tokenizer) -> set[int]:
    """The tokens that end a sample: the model's generation config's EOS ids, else the tokenizer's."""
    found = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if found is None and tokenizer is not None:
        found = tokenizer.eos_token_id
    return set() if found is None else {found} if isinstance(found, int) else set(found)


class Decoder:
    """Generates after contexts that extend a preface, with ``model``'s own forward and cache
    (``runner``: a :class:`CacheRunner` to share, e.g. with scoring; one is made otherwise);
    ``tokenizer`` decodes text (needed for stop strings)."""

    def __init__(self, model, tokenizer=None, runner: CacheRunner | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.runner = runner or CacheRunner(model)
        self.eos = eos_ids(model, tokenizer)
        self.padded = self.runner.mode == "multi" and not windowed(model.config) and self.probe_padding()

    def close(self) -> None:
        """Drop the preface's cache and give the model its own layers back."""
        self.runner.close()

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_preface(self, tokens: Sequence[int]) -> None:
        """Take ``tokens`` as the preface every context starts with (its cache computed once)."""
        self.runner.set_preface(tuple(tokens))

    def share_preface(self, contexts: Sequence[Sequence[int]]) -> None:
        """Take as the preface the longest prefix all ``contexts`` share that leaves each one a
        token of its own (so each continues from the preface's cache)."""
        contexts = [tuple(context) for context in contexts]
        self.set_preface(common_prefix(contexts)[:min(map(len, contexts), default=1) - 1])

    @torch.no_grad()
    def generate(self, contexts: Sequence[Sequence[int]], settings: DecodingSettings,
                 rows: Sequence[int] | None = None, batch_size: int = 16) -> list[list[Generation]]:
        """``settings.samples`` generations after each context (whole token ids, the preface
        included); sample ``s`` of context ``i`` draws from the stream of (``settings.seed``,
        ``rows[i]`` (default ``i``), ``s``). At most ``batch_size`` samples advance together."""
        rows = list(range(len(contexts))) if rows is None else list(rows)
        finder = StopFinder(self.tokenizer, settings.stops) if settings.stops else None
        if finder is None and self.tokenizer is None:
            raise ValueError("a decoder without a tokenizer cannot give the generated text")
        contexts = [tuple(context) for context in contexts]
        results: list[list[Generation] | None] = [None] * len(contexts)
        for group in self._groups(contexts, settings.samples, batch_size):
            found = self._batch([contexts[i] for i in group], [rows[i] for i in group], settings, finder)
            for number, generations in zip(group, found):
                results[number] = generations
        return results

    def _groups(self, contexts, samples: int, batch_size: int) -> list[list[int]]:
        """Contexts run together: by length where padding is proved exact (so little is padded),
        up to ``batch_size`` samples; alone otherwise (and when one adds nothing to the preface)."""
        preface = len(self.runner.preface)
        alone = [i for i, context in enumerate(contexts) if not self.padded or len(context) <= preface]
        together = sorted((i for i, context in enumerate(contexts) if self.padded and len(context) > preface),
                          key=lambda i: (len(contexts[i]), i))
        width = max(1, batch_size // samples)
        return [[i] for i in alone] + [together[start:start + width] for start in range(0, len(together), width)]

    def _batch(self, contexts, rows, settings: DecodingSettings, finder: StopFinder | None) -> list[list[Generation]]:
        samples = settings.samples
        if settings.max_new_tokens == 0:
            return [[Generation((), "", "budget", None, 0)] * samples for _ in contexts]
        state = self._start(contexts)
        state.expand(samples)
        streams = [] if settings.greedy else [sample_stream(settings.seed, row, s) for row in rows for s in range(samples)]
        tokens: list[list[int]] = [[] for _ in range(len(contexts) * samples)]
        searched, ended = [0] * len(tokens), [None] * len(tokens)
        active = list(range(len(tokens)))
        for _ in range(settings.max_new_tokens):
            chosen = next_tokens(state.last, settings, [streams[r] for r in active] if streams else [])
            still = []
            for slot, (r, token) in enumerate(zip(active, chosen)):
                if settings.stop_at_eos and token in self.eos:
                    ended[r] = self._ended(tokens[r], "eos", None, len(tokens[r]) + 1)
                    continue
                tokens[r].append(token)
                if finder is not None:
                    match, searched[r] = finder.find(tokens[r], searched[r])
                    if match is not None:
                        at, stop = match
                        ended[r] = Generation(tuple(finder.cut(tokens[r], at)), finder.text(tokens[r])[:at], "stop",
                                              stop, len(tokens[r]), tuple(tokens[r]))
                        continue
                if len(tokens[r]) == settings.max_new_tokens:
                    ended[r] = self._ended(tokens[r], "budget", None, len(tokens[r]))
                    continue
                still.append(slot)
            if not still:
                break
            if len(still) < len(active):
                state.keep(still)
                active = [active[slot] for slot in still]
            state.advance([tokens[r][-1] for r in active])
        return [ended[number * samples:(number + 1) * samples] for number in range(len(contexts))]

    def _ended(self, tokens: list[int], stop: str, stop_string: str | None, generated: int) -> Generation:
        text = "" if self.tokenizer is None else decoded(self.tokenizer, tokens)
        return Generation(tuple(tokens), text, stop, stop_string, generated, tuple(tokens))

    def _start(self, contexts) -> "_State":
        """The state after ``contexts`` (one, or several this model is proved to take padded)."""
        runner = self.runner
        if runner.mode == "plain":
            logprobs, _ = runner._forward(torch.tensor([contexts[0]]), keep_cache=False, last_only=True)
            return _State(runner, logprobs[:, -1], None, sequences=[list(contexts[0])])
        if len(contexts) == 1:
            last, cache = runner._prefix(contexts[0])
            return _State(runner, last[None], fork(cache, 1, runner.device))
        preface = len(runner.preface)
        width = max(len(context) for context in contexts) - preface
        ids, mask, positions = [], [], []
        for context in contexts:
            rest = list(context[preface:])
            pad = width - len(rest)
            ids.append([PAD] * pad + rest)
            mask.append([1] * preface + [0] * pad + [1] * len(rest))
            positions.append([preface] * pad + list(range(preface, len(context))))
        mask = torch.tensor(mask, device=runner.device)
        logprobs, cache = runner._forward(torch.tensor(ids), fork(runner.preface_cache, len(contexts), runner.device),
                                          last_only=True, attention_mask=mask,
                                          position_ids=torch.tensor(positions, device=runner.device))
        return _State(runner, logprobs[:, -1], cache, mask,
                      torch.tensor([len(context) for context in contexts], device=runner.device))

    @torch.no_grad()
    def probe_padding(self) -> bool:
        """Whether two prompts of different lengths, padded into one batch after the preface's
        cache, get what each gets alone from the plain forward pass, over a few steps (random tokens)."""
        vocabulary = min(self.model.get_input_embeddings().num_embeddings, 256)
        ids = torch.randint(0, vocabulary, (24,), generator=torch.Generator().manual_seed(1)).tolist()
        preface, contexts, steps = ids[:6], [ids[:9], ids[:15]], [ids[15:18], ids[18:21]]
        tolerance = PROBE_TOLERANCE.get(next(self.model.parameters()).dtype, PROBE_TOLERANCE_HALF)
        self.set_preface(preface)
        try:
            state = self._start(contexts)
            got = [state.last]
            for column in range(len(steps[0])):
                state.advance([step[column] for step in steps])
                got.append(state.last)
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError, NotImplementedError):
            return False
        finally:
            self.set_preface(())
        for number, (context, step) in enumerate(zip(contexts, steps)):
            whole = torch.tensor([list(context) + step])
            reference, _ = self.runner._forward(whole, keep_cache=False)
            wanted = reference[0, len(context) - 1:]
            if any((row[number] - want).abs().max() > tolerance for row, want in zip(got, wanted)):
                return False
        return True


class _State:
    """The rows being generated: log-probs of each one's next token (``last`` [R, V]), the cache
    after them, and where padding is in use the attention mask and each row's next position; in
    ``plain`` mode the whole sequences instead of a cache."""

    def __init__(self, runner: CacheRunner, last: torch.Tensor, cache, mask: torch.Tensor | None = None,
                 positions: torch.Tensor | None = None, sequences: list[list[int]] | None = None):
        self.runner, self.last, self.cache, self.mask, self.positions = runner, last, cache, mask, positions
        self.sequences = sequences

    def expand(self, copies: int) -> None:
        """Each row repeated ``copies`` times (in place), for a prompt's samples."""
        if copies == 1:
            return
        self.last = self.last.repeat_interleave(copies, dim=0)
        if self.sequences is not None:
            self.sequences = [list(sequence) for sequence in self.sequences for _ in range(copies)]
            return
        self.cache = fork(self.cache, copies, self.runner.device)
        if self.mask is not None:
            self.mask = self.mask.repeat_interleave(copies, dim=0)
            self.positions = self.positions.repeat_interleave(copies, dim=0)

    def keep(self, slots: list[int]) -> None:
        """Only the rows at ``slots`` go on."""
        index = torch.tensor(slots, device=self.runner.device)
        if self.sequences is not None:
            self.sequences = [self.sequences[slot] for slot in slots]
            return
        self.cache = select(self.cache, index)
        if self.mask is not None:
            self.mask, self.positions = self.mask[index], self.positions[index]

    def advance(self, tokens: list[int]) -> None:
        """Feed each row its next token; ``last`` becomes the log-probs after it."""
        runner = self.runner
        if self.sequences is not None:
            for sequence, token in zip(self.sequences, tokens):
                sequence.append(token)
            logprobs, _ = runner._forward(torch.tensor(self.sequences), keep_cache=False, last_only=True)
            self.last = logprobs[:, -1]
            return
        inputs = {}
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
            inputs = {"attention_mask": self.mask, "position_ids": self.positions[:, None]}
            self.positions = self.positions + 1
        logprobs, self.cache = runner._forward(torch.tensor(tokens)[:, None], self.cache, last_only=True, **inputs)
        self.last = logprobs[:, -1]
