"""Turn rows into token sequences to score, split exactly as the prize pipeline splits them.

Each (context, continuation) pair is scored on the tokens of the one string ``context +
continuation`` with the tokenizer's special tokens; the continuation's tokens are the last ``k`` of
them, where ``k`` is the continuation's own token count (tokenized alone, without special tokens).
Because the joint tokenization is kept as is, an item whose joint split differs from the separate
one simply gets its own trie branch: results stay exactly those of the per-option forward pass.

:class:`PairTokenizer` produces those joint tokens while tokenizing unique text only where that is
provably exact (:mod:`invscale.scoring.splice`): the dataset's shared preface once; each distinct
context from the last safe cut inside the text it shares with the context before it (in text
order), reusing that context's tokens up to the cut; and the short junction text (the end of the
context plus the continuation) once per distinct string. ASCII text of byte-level tokenizers is
tokenized pre-token by pre-token (:mod:`invscale.scoring.words`). Other tokenizers take the
whole-string path.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from itertools import chain
from typing import Iterable, NamedTuple

from invscale.data import DataError, Row, TaskType
from invscale.scoring.splice import (Cuts, SpliceRule, common_text_length, cuts, splice_rule,
                                     tokenizer_cuts)
from invscale.scoring.trie import common_prefix
from invscale.scoring.words import replace_from


@dataclass(frozen=True)
class ScoredSequence:
    """Token ids of one context+continuation; the last ``n_target`` are scored."""

    tokens: tuple[int, ...]
    n_target: int


def continuation_field(task_type: TaskType) -> str:
    """The data field a task type's continuations come from, for error messages."""
    return "completion" if task_type is TaskType.sequence_prob else "classes"


def continuations(row: Row, task_type: TaskType) -> list[tuple[str, str]]:
    """The (context, continuation) pairs a row is scored on, in the order the metrics expect.

    classification: one per class; logodds: (prompt, c0), (prompt, c1), (other_prompt, c0),
    (other_prompt, c1); sequence_prob: (prompt, completion).
    """
    if task_type is TaskType.sequence_prob:
        return [(row.prompt, row.completion)]
    pairs = [(row.prompt, c) for c in row.classes]
    if task_type in (TaskType.logodds, TaskType.absolute_logodds):
        pairs += [(row.other_prompt, c) for c in row.classes]
    return pairs


class ContextTokens(NamedTuple):
    """A context's tokens after the preface as packing wants them: ``stem``, the tokens every one of
    its sequences starts with; ``hint``, how many of them are known to equal the previous context's
    stem (in the list tokenized together; 0 when unknown); and per continuation, its tokens after
    the stem and how many of the whole sequence's last tokens are scored."""

    stem: tuple[int, ...]
    hint: int
    junctions: tuple[tuple[tuple[int, ...], int], ...]


class PairTokenizer:
    """Joint token sequences of (context, continuation) pairs, from unique text where exact.

    ``contexts``: every context of the dataset (skipped rows included, so that a resumed run finds
    the same preface): the preface is the tokens of their common text up to its last safe cut,
    shared by every sequence. ``splice=False`` forces the whole-string path, where the caller may
    :meth:`adopt_preface` once it knows a prefix every sequence shares.

    Contexts are tokenized in the order given (sorted text, so each shares a prefix with the one
    before it): a context's tokens up to the last safe cut inside the text it shares with the
    previous context are that context's, and only the rest is tokenized. So the tokenizer sees
    each context's text beyond what it shares with its neighbour, and each distinct junction
    (the context's text from its last safe cut, plus a continuation) once.
    """

    def __init__(self, tokenizer, contexts: Iterable[str], splice: bool = True):
        self.tokenizer = tokenizer
        self.rule: SpliceRule | None = splice_rule(tokenizer) if splice else None
        self._continuations: dict[str, int] = {}
        self._junctions: dict[str, tuple[int, ...]] = {}
        self._whole: dict[tuple[str, str], tuple[int, ...]] = {}
        self._tails: dict[tuple[str, tuple[str, ...]], tuple | None] = {}
        self.spliced = self.whole = 0  # pairs tokenized each way
        distinct = set(contexts)
        common = os.path.commonprefix([min(distinct), max(distinct)]) if distinct else ""
        self.preface, self._preface_chars = self._cut(common)

    def _cut(self, common: str) -> tuple[tuple[int, ...], int]:
        """(tokens of ``common`` up to its last safe cut, with the special prefix; the cut's
        character position), or the special prefix alone when there is no safe cut."""
        if self.rule is None:
            return (), 0
        found = cuts(self.rule, common)
        if found is None:
            return self.rule.special_prefix, 0
        index = found.last_before(self.rule.cut.limit(common, len(common)))
        return self.rule.special_prefix + tuple(found.ids[:found.firsts[index]]), found.starts[index]

    def adopt_preface(self, preface: tuple[int, ...]) -> None:
        """Use ``preface`` (a prefix of every sequence, found from whole-string tokens) from now on."""
        if self.rule is not None:
            raise ValueError("the preface of a spliced tokenizer comes from the contexts' common text")
        self.preface = tuple(preface)

    def target_counts(self, continuations: Iterable[str]) -> dict[str, int]:
        """Each continuation's own token count (without special tokens), tokenized once."""
        known, wanted = self._continuations, set(continuations)
        new = wanted - known.keys()
        if len(known) + len(new) > 200_000:  # bounded memory over a long run of distinct completions
            known.clear()
            new = wanted
        new = sorted(new)
        for text, tokens in zip(new, self._encode(new, special=False)):
            known[text] = len(tokens)
        return known

    def contexts(self, contexts: list[str], continuations: list[tuple[str, ...]]) -> list[ContextTokens]:
        """Each context's stem and its continuations' tokens below it (``continuations[i]`` are
        context ``i``'s, distinct)."""
        targets = self.target_counts(chain.from_iterable(continuations))
        start, out, previous, spliced = self._preface_chars, [], None, 0
        tails = self._tails
        for context, own_continuations in zip(contexts, continuations):
            found = None
            if self.rule is not None:
                own = context[start:]
                found, hint = self._own_cuts(own, previous)
            if found is not None:
                index = max(bisect_right(found.starts, self.rule.cut.limit(own, len(own))) - 1, 0)  # the last safe cut
                tail = own[found.starts[index]:]
                junctions = tails.get((tail, own_continuations), False)
                if junctions is False:
                    junctions = self._below(tail, own_continuations, targets)
                if junctions is not None:
                    out.append(ContextTokens(tuple(found.ids[:found.firsts[index]]), hint, junctions))
                    spliced += len(own_continuations)
                    previous = (own, found)
                    continue
            out.append(self._whole_context(context, own_continuations, targets))
            previous = None
        self.spliced += spliced
        return out

    def first_differing(self, checks: list[tuple[str | None, str, str]]) -> int | None:
        """The index of the first check whose tokens here differ from the tokenizer's own tokens of
        the joined string (or whose scored count differs from the continuation's own), or None.

        A check is (neighbour, context, continuation): the context is tokenized as a run tokenizes
        it after that neighbour (the context before it in its chunk's text order; None for the
        first), reusing the neighbour's tokens where the run would."""
        if self.rule is None or not checks:
            return None
        continuations = sorted({k for _, _, k in checks})
        own_counts = dict(zip(continuations, map(len, self.tokenizer(continuations, add_special_tokens=False)["input_ids"])))
        whole = self.tokenizer([context + k for _, context, k in checks])["input_ids"]
        counted = self.spliced, self.whole  # the run's own counts, not the checks'
        try:
            for number, ((neighbour, context, k), reference) in enumerate(zip(checks, whole)):
                contexts, own = ([neighbour, context], [(k,), (k,)]) if neighbour is not None else ([context], [(k,)])
                found = self.contexts(contexts, own)[-1]
                junction, n_target = found.junctions[0]
                if self.preface + found.stem + junction != tuple(reference) or n_target != own_counts[k]:
                    return number
            return None
        finally:
            self.spliced, self.whole = counted

    def _below(self, tail: str, own_continuations: tuple[str, ...],
               targets: dict[str, int]) -> tuple[tuple[tuple[int, ...], int], ...] | None:
        """The junctions (tokens of ``tail`` + each continuation, target count) below a context's
        last safe cut, ``tail`` being its text from there; None when the pairs must be tokenized
        whole (a junction has fewer tokens than its continuation alone). Cached: most contexts end
        in the same few tails."""
        if len(self._tails) > 200_000:
            self._tails.clear()
        junctions = tuple((self._junction(tail + k), targets[k]) for k in own_continuations)
        found = None if any(n > len(j) for j, n in junctions) else junctions
        self._tails[tail, own_continuations] = found
        return found

    def _own_cuts(self, own: str, previous: tuple[str, Cuts] | None) -> tuple[Cuts | None, int]:
        """``own``'s cuts, reusing the previous context's tokens up to the last safe cut in the text
        they share (its lists are truncated there and extended, not copied); and how many tokens
        were reused."""
        rule = self.rule
        if previous is not None:
            before, found = previous
            starts = found.starts
            index = bisect_right(starts, rule.cut.limit(own, common_text_length(before, own))) - 1
            if index > 0:
                cut, reused = starts[index], found.firsts[index]
                if rule.words is not None and rule.words.extend(own, cut, *found, index):
                    return found, reused
                if not (rule.added is not None and rule.added.found_in(own, cut)):
                    rest = tokenizer_cuts(rule, own[cut:], cut, reused)  # the word path, tried above, declined it
                    if rest is not None:
                        replace_from(*found, index, *rest)
                        return found, reused
        return cuts(rule, own), 0

    def _whole_context(self, context: str, own_continuations: tuple[str, ...], targets: dict[str, int]) -> ContextTokens:
        """A context whose pairs are tokenized as whole strings: its stem is what they share."""
        sequences = self._whole_suffixes([(context, k) for k in own_continuations])
        counts = [targets[k] for k in own_continuations]
        stem = common_prefix(sequences)[:max(0, min(len(tokens) - n for tokens, n in zip(sequences, counts)))]
        self.whole += len(own_continuations)
        return ContextTokens(stem, 0, tuple((tokens[len(stem):], n) for tokens, n in zip(sequences, counts)))

    def _whole_suffixes(self, pairs: list[tuple[str, str]]) -> list[tuple[int, ...]]:
        """The joint tokens after the preface of pairs tokenized as whole strings."""
        new = [pair for pair in pairs if pair not in self._whole]
        preface = self.preface
        for pair, tokens in zip(new, self._encode([c + k for c, k in new], special=True)):
            if tokens[:len(preface)] != preface:
                raise RuntimeError(f"the preface is not a prefix of {pair[0][:40]!r}…: tokenizer not splice-safe")
            self._whole[pair] = tokens
        found = [self._whole[pair][len(preface):] for pair in pairs]
        if self.rule is not None:  # kept only for the eager path, whose preface comes from them
            self._whole.clear()
        return found

    def whole_sequences(self, pairs: list[tuple[str, str]]) -> list[tuple[tuple[int, ...], int]]:
        """(joint tokens after the preface, target count) of pairs tokenized as whole strings, kept
        for later: the path of a tokenizer that cannot be spliced, whose preface is then found from
        them (called before any preface is adopted, the tokens are whole)."""
        targets = self.target_counts(k for _, k in pairs)
        return [(tokens, targets[k]) for tokens, (_, k) in zip(self._whole_suffixes(pairs), pairs)]

    def sequences(self, pairs: list[tuple[str, str]]) -> list[ScoredSequence]:
        """The whole joint tokens and target count of each (context, continuation) pair."""
        by_context: dict[str, dict[str, None]] = {}
        for context, continuation in pairs:
            by_context.setdefault(context, {})[continuation] = None
        ordered = sorted(by_context)
        found = {}
        for context, tokens in zip(ordered, self.contexts(ordered, [tuple(by_context[c]) for c in ordered])):
            for continuation, (junction, n_target) in zip(by_context[context], tokens.junctions):
                found[context, continuation] = ScoredSequence(self.preface + tokens.stem + junction, n_target)
        return [found[pair] for pair in pairs]

    def _junction(self, text: str) -> tuple[int, ...]:
        """Tokens of a junction text (a context's tail and a continuation), tokenized once."""
        found = self._junctions.get(text)
        if found is None:
            if len(self._junctions) > 200_000:  # bounded memory over a long run; repeats come back fast
                self._junctions.clear()
            found = self._junctions[text] = self._encode([text], special=False)[0]
        return found

    def _encode(self, texts: list[str], special: bool) -> list[tuple[int, ...]]:
        if not texts:
            return []
        if self.rule is None:
            return [tuple(ids) for ids in self.tokenizer(texts, add_special_tokens=special)["input_ids"]]
        words, prefix = self.rule.words, self.rule.special_prefix if special else ()
        fast = [words.ids(text) for text in texts] if words is not None else [None] * len(texts)
        slow = [text for text, ids in zip(texts, fast) if ids is None]
        encoded = iter(self.rule.backend.encode_batch(slow, add_special_tokens=special)) if slow else iter(())
        return [prefix + tuple(ids) if ids is not None else tuple(next(encoded).ids) for ids in fast]


def row_pairs(rows: list[Row], task_type: TaskType) -> list[tuple[str, str]]:
    """Every row's (context, continuation) pairs, flattened in row order."""
    return [pair for row in rows for pair in continuations(row, task_type)]


def check_sequences(rows: list[Row], task_type: TaskType, sequences: list[ScoredSequence], source: str,
                    max_positions: int | None) -> list[list[ScoredSequence]]:
    """``sequences`` (flattened as :func:`row_pairs` lists them) regrouped per row; raise
    :class:`DataError` naming the row if one cannot be scored."""
    field_name = continuation_field(task_type)
    grouped, cursor = [], 0
    for row in rows:
        pairs = continuations(row, task_type)
        row_sequences = sequences[cursor:cursor + len(pairs)]
        cursor += len(pairs)
        for (context, continuation), sequence in zip(pairs, row_sequences):
            where = f"{source}: row {row.index + 1}: field '{field_name}'"
            if sequence.n_target == 0:
                raise DataError(f"{where}: {continuation!r} has no tokens")
            if sequence.n_target >= len(sequence.tokens):
                raise DataError(f"{where}: {unpredictable(context, continuation, sequence)}")
            if max_positions is not None and len(sequence.tokens) > max_positions:
                raise DataError(
                    f"{source}: row {row.index + 1}: field 'prompt': context + continuation is "
                    f"{len(sequence.tokens)} tokens, more than the model's {max_positions} positions"
                )
        grouped.append(row_sequences)
    return grouped


def unpredictable(context: str, continuation: str, sequence: ScoredSequence) -> str:
    """Why nothing predicts the first token of a continuation that would be its whole sequence."""
    if not context:
        return f"{continuation!r} would be the whole sequence: the context is empty and the tokenizer adds no BOS"
    return (f"{context!r} + {continuation!r} is {len(sequence.tokens)} token(s), no more than {continuation!r}'s own "
            f"{sequence.n_target}: the context merges into its tokens and the tokenizer adds no BOS, so nothing "
            "predicts its first token")


def tokenize_rows(tokenizer, rows: list[Row], task_type: TaskType, source: str,
                  max_positions: int | None = None) -> list[list[ScoredSequence]]:
    """Tokenize every row's pairs (all at once); raise :class:`DataError` naming the row if one
    cannot be scored."""
    pairs = row_pairs(rows, task_type)
    return check_sequences(rows, task_type, PairTokenizer(tokenizer, (c for c, _ in pairs)).sequences(pairs), source,
                           max_positions)
