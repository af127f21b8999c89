"""Turn rows into token sequences to score, split exactly as the prize pipeline splits them.

Each (context, continuation) pair is scored on the tokens of the one string ``context +
continuation`` with the tokenizer's special tokens; the continuation's tokens are the last ``k`` of
them, where ``k`` is the continuation's own token count (tokenized alone, without special tokens).
Because the joint tokenization is kept as is, an item whose joint split differs from the separate
one simply gets its own trie branch: results stay exactly those of the per-option forward pass.

:class:`PairTokenizer` produces those joint tokens while tokenizing unique text only where that is
provably exact (:mod:`invscale.scoring.splice`): the dataset's shared preface once, each distinct
context's own text once, and the short junction text (the end of the context plus the
continuation) once per distinct string. Other tokenizers take the whole-string path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from invscale.data import DataError, Row, TaskType
from invscale.scoring.splice import SpliceRule, last_cut, splice_rule


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


class PairTokenizer:
    """Joint token sequences of (context, continuation) pairs, from unique text where exact.

    ``contexts``: every context of the dataset (skipped rows included, so that a resumed run finds
    the same preface): the preface is the tokens of their common text up to its last safe cut,
    shared by every sequence. ``splice=False`` forces the whole-string path, where the caller may
    :meth:`adopt_preface` once it knows a prefix every sequence shares.
    """

    def __init__(self, tokenizer, contexts: Iterable[str], splice: bool = True):
        self.tokenizer = tokenizer
        self.rule: SpliceRule | None = splice_rule(tokenizer) if splice else None
        self._continuations: dict[str, int] = {}
        self._junctions: dict[str, tuple[int, ...]] = {}
        self.spliced = self.whole = 0  # pairs tokenized each way
        distinct = set(contexts)
        common = os.path.commonprefix(list(distinct)) if distinct else ""
        self.preface, self._preface_chars = self._cut(common)
        if self._preface_chars and any(self.rule.added_across(c, self._preface_chars) for c in distinct):
            self.preface, self._preface_chars = self.rule.special_prefix, 0  # an added token spans the cut

    def _cut(self, common: str) -> tuple[tuple[int, ...], int]:
        """(tokens of ``common`` up to its last safe cut, with the special prefix; the cut's
        character position), or the special prefix alone when there is no safe cut."""
        if self.rule is None:
            return (), 0
        encoding = self.rule.backend.encode(common, add_special_tokens=False)
        cut = last_cut(self.rule, common, encoding)
        if cut is None:
            return self.rule.special_prefix, 0
        chars, tokens = cut
        return self.rule.special_prefix + tuple(encoding.ids[:tokens]), chars

    def adopt_preface(self, preface: tuple[int, ...]) -> None:
        """Use ``preface`` (a prefix of every sequence, found from whole-string tokens) from now on."""
        if self.rule is not None:
            raise ValueError("the preface of a spliced tokenizer comes from the contexts' common text")
        self.preface = tuple(preface)

    def target_counts(self, continuations: Iterable[str]) -> dict[str, int]:
        """Each continuation's own token count (without special tokens), tokenized once."""
        wanted = set(continuations)
        if len(self._continuations) > 200_000:  # bounded memory over a long run of distinct completions
            self._continuations.clear()
        new = sorted(wanted - self._continuations.keys())
        for text, tokens in zip(new, self._encode(new, special=False)):
            self._continuations[text] = len(tokens)
        return self._continuations

    def sequences(self, pairs: list[tuple[str, str]]) -> list[ScoredSequence]:
        """The whole joint tokens and target count of each (context, continuation) pair."""
        return [ScoredSequence(self.preface + tokens, n_target) for tokens, n_target in self.suffixes(pairs)]

    def suffixes(self, pairs: list[tuple[str, str]]) -> list[tuple[tuple[int, ...], int]]:
        """(joint tokens after the preface, target count) of each (context, continuation) pair."""
        targets = self.target_counts(pair[1] for pair in pairs)
        contexts = self._contexts({context for context, _ in pairs}) if self.rule is not None else {}
        spliced = [contexts.get(c) if c in contexts and not self._added_across(contexts[c], k) else None
                   for c, k in pairs]
        self._encode_junctions(list({part[1] + k: None for part, (_, k) in zip(spliced, pairs) if part is not None}))
        out, whole = [], []
        for number, (part, (_, continuation)) in enumerate(zip(spliced, pairs)):
            if part is None:  # no safe cut, an added token across it, or no splice rule: the whole string
                out.append(None)
                whole.append(number)
            else:
                out.append((part[0] + self._junctions[part[1] + continuation], targets[continuation]))
        preface = self.preface
        for number, tokens in zip(whole, self._encode([pairs[n][0] + pairs[n][1] for n in whole], special=True)):
            if tokens[:len(preface)] != preface:
                raise RuntimeError(f"the preface is not a prefix of {pairs[number][0][:40]!r}…: tokenizer not splice-safe")
            out[number] = (tokens[len(preface):], targets[pairs[number][1]])
        self.whole += len(whole)
        self.spliced += len(pairs) - len(whole)
        return out

    def _added_across(self, part: tuple, continuation: str) -> bool:
        """An added token over the cut of a context joined with ``continuation``."""
        lead = part[2]
        return self.rule.added is not None and self.rule.added_across(lead + part[1] + continuation, len(lead))

    def _contexts(self, contexts: set[str]) -> dict[str, tuple[tuple[int, ...], str, str]]:
        """Each context's (tokens after the preface up to its last safe cut, text from the cut on,
        the few characters before the cut that an added token could start in), its own text (after
        the preface) tokenized once; contexts with no safe cut are left out."""
        rule, start = self.rule, self._preface_chars
        texts = [c for c in contexts if len(c) > start]
        encodings = rule.backend.encode_batch([c[start:] for c in texts], add_special_tokens=False)
        found = {}
        for context, encoding in zip(texts, encodings):
            own = context[start:]
            cut = last_cut(rule, own, encoding)
            if cut is not None:
                chars, tokens = cut
                lead = own[max(0, chars - rule.longest_added + 1):chars]
                found[context] = (tuple(encoding.ids[:tokens]), own[chars:], lead)
        return found

    def _encode_junctions(self, texts: list[str]) -> None:
        if len(self._junctions) > 200_000:  # bounded memory over a long run; repeated junctions come back fast
            self._junctions.clear()
        new = [text for text in texts if text not in self._junctions]
        for text, tokens in zip(new, self._encode(new, special=False)):
            self._junctions[text] = tokens

    def _encode(self, texts: list[str], special: bool) -> list[tuple[int, ...]]:
        if not texts:
            return []
        if self.rule is not None:
            return [tuple(e.ids) for e in self.rule.backend.encode_batch(texts, add_special_tokens=special)]
        return [tuple(ids) for ids in self.tokenizer(texts, add_special_tokens=special)["input_ids"]]


def contexts(row: Row, task_type: TaskType) -> tuple[str, ...]:
    """The distinct contexts a row's pairs are scored after."""
    if task_type in (TaskType.logodds, TaskType.absolute_logodds):
        return row.prompt, row.other_prompt
    return (row.prompt,)


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
        for (_, continuation), sequence in zip(pairs, row_sequences):
            where = f"{source}: row {row.index + 1}: field '{field_name}'"
            if sequence.n_target == 0:
                raise DataError(f"{where}: {continuation!r} has no tokens")
            if sequence.n_target >= len(sequence.tokens):
                raise DataError(
                    f"{where}: {continuation!r} would be the whole sequence; the tokenizer adds no BOS "
                    "and the context is empty, so nothing predicts its first token"
                )
            if max_positions is not None and len(sequence.tokens) > max_positions:
                raise DataError(
                    f"{source}: row {row.index + 1}: field 'prompt': context + continuation is "
                    f"{len(sequence.tokens)} tokens, more than the model's {max_positions} positions"
                )
        grouped.append(row_sequences)
    return grouped


def tokenize_rows(tokenizer, rows: list[Row], task_type: TaskType, source: str,
                  max_positions: int | None = None) -> list[list[ScoredSequence]]:
    """Tokenize every row's pairs (all at once); raise :class:`DataError` naming the row if one
    cannot be scored."""
    pairs = row_pairs(rows, task_type)
    return check_sequences(rows, task_type, PairTokenizer(tokenizer, (c for c, _ in pairs)).sequences(pairs), source,
                           max_positions)
