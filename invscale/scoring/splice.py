"""Joint tokens of context + continuation from the tokens of their parts: unique text only.

The prize pipeline tokenizes ``context + continuation`` as one string, and our exactness rests on
those tokens. Tokenizing every pair whole costs the naive text (the shared preface and each prompt
once per option); this module gets the same tokens while tokenizing each distinct piece once.

Why it is exact, for the tokenizers it accepts (:func:`splice_rule`): a BPE model (without dropout)
merges only within a pre-token, so a pre-token boundary ``c`` of the context at which the tokens
before ``c`` cannot depend on what follows the context is a boundary of ``context + anything``,
with the same tokens before it, and the tokens after it are those of ``text[c:]`` tokenized alone.
Which boundaries those are is derived from the tokenizer's own pre-tokenizer, normalizer and added
tokens by :mod:`invscale.scoring.boundary` (the argument is in its docstring): not a fixed window,
since a pattern such as ``\\s*[\\r\\n]+`` reads a whitespace run to its end however long it is. The
joint tokens are then ``tokens(context)[:up to c] + tokens(context[c:] + continuation)``; the
second part is short and, in most datasets, the same string for many rows (``":" + " A"``), so it
is cached.

The same argument lets a context reuse the tokens of another that shares its first ``s``
characters, up to a cut whose tokens cannot depend on what follows ``s`` (:class:`Cuts`).

Pre-token boundaries come from the encoding of the text itself (where each pre-token's first token
starts; from the pre-tokenizer when the tokenizer trims offsets), or from the regex pass of
:mod:`invscale.scoring.words` for ASCII text. A text with no safe cut, and every text of a
tokenizer the rule does not recognise, takes the whole-string path: slower, never wrong.
tests/test_splice.py and tests/test_tokenizer_kinds.py check the equality on adversarial pairs for
every kind of tokenizer accepted and refused.
"""

from __future__ import annotations

import json
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from typing import NamedTuple

from invscale.scoring.added import AddedContents
from invscale.scoring.boundary import CutRule, Unsupported, cut_rule, maps_characters, normal_forms, per_character
from invscale.scoring.words import WordEncoder, word_encoder

PROBES = ("a", "Hello world", " x\n1", "  two  spaces, 123 4567!? e\u0301 \u4e2d\u6587 \U0001f600")


@dataclass(frozen=True)
class SpliceRule:
    """How a tokenizer may be spliced: its backend, the special tokens it puts before a text,
    whether it normalizes (then cuts go before an ASCII character only) and with which Unicode
    forms (then only text already in those forms is cut), whether its offsets are trimmed (then
    boundaries come from the pre-tokenizer, not the offsets), the added tokens that force a
    text onto the whole-string path, and where a text may be cut (``cut``); ``words`` tokenizes
    ASCII text fast where that is exact (:mod:`invscale.scoring.words`)."""

    backend: object
    special_prefix: tuple[int, ...]
    normalizes: bool
    unicode_forms: tuple[str, ...]
    trims_offsets: bool
    added: AddedContents | None
    cut: CutRule
    words: WordEncoder | None = None


def splice_rule(tokenizer) -> SpliceRule | None:
    """The splice rule for ``tokenizer``, or None when splicing it cannot be shown exact."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (backend is None or type(backend.model).__name__ != "BPE" or backend.model.dropout
            or backend.truncation or backend.padding):
        return None
    normalizer, pre_tokenizer, processor = (_state(part) for part in
                                            (backend.normalizer, backend.pre_tokenizer, backend.post_processor))
    if normalizer is not None and not per_character(normalizer):
        return None
    added_tokens = list(backend.get_added_tokens_decoder().values())
    if normalizer is not None and any(token.normalized for token in added_tokens) and maps_characters(normalizer):
        return None  # such a token is found in the normalized text, which the checks here do not read
    added = AddedContents(token.content for token in added_tokens) or None
    try:
        cut = cut_rule(pre_tokenizer, normalizer, backend.normalizer.normalize_str if normalizer is not None else None,
                       added, any(token.lstrip for token in added_tokens))
    except Unsupported:
        return None
    if not _wrapper_is_backend(tokenizer, backend):
        return None
    prefix = _special_prefix(backend)
    if prefix is None:
        return None
    forms = tuple(normal_forms(normalizer))
    trims = processor is not None and '"trim_offsets":true' in json.dumps(processor, separators=(",", ":"))
    return SpliceRule(backend, prefix, normalizer is not None, forms, trims, added, cut,
                      word_encoder(backend, pre_tokenizer, normalizer, added))


def _state(component) -> dict | None:
    """A tokenizer component's own description (its JSON), or None when there is none."""
    return None if component is None else json.loads(component.__getstate__())


def _wrapper_is_backend(tokenizer, backend) -> bool:
    """The pieces are tokenized by the backend directly; the tokenizer as a user calls it (which the
    reference calls too) must give the same ids."""
    for special in (True, False):
        wrapped = tokenizer(list(PROBES), add_special_tokens=special)["input_ids"]
        if [list(ids) for ids in wrapped] != [e.ids for e in backend.encode_batch(list(PROBES), add_special_tokens=special)]:
            return False
    return True


def _special_prefix(backend) -> tuple[int, ...] | None:
    """The ids the tokenizer puts before every text, if it adds special tokens only there."""
    prefix = None
    for probe in PROBES:
        with_special = backend.encode(probe, add_special_tokens=True).ids
        plain = backend.encode(probe, add_special_tokens=False).ids
        if with_special[len(with_special) - len(plain):] != plain:
            return None
        head = tuple(with_special[:len(with_special) - len(plain)])
        if prefix is not None and head != prefix:
            return None
        prefix = head
    return prefix


class Cuts(NamedTuple):
    """A text's token ids (no special tokens) and where it may be cut: the start of each pre-token
    (character position, ascending, 0 first) a cut may fall at, and how many tokens lie before it."""

    ids: list[int]
    starts: list[int]
    firsts: list[int]

    def last_before(self, limit: int) -> int:
        """The index of the last cut at or before character ``limit`` (0, the text's start, when none)."""
        return max(bisect_right(self.starts, limit) - 1, 0)


def cuts(rule: SpliceRule, text: str) -> Cuts | None:
    """``text``'s tokens and cuts, or None when no cut inside it can be shown exact (an added
    token's content in it, text not in the normalizer's forms, a normalizer that changes its length):
    from the fast word path where it applies, else from the tokenizer."""
    if rule.words is not None:
        found = rule.words.encode(text)
        if found is not None:
            return Cuts(*found)
    return tokenizer_cuts(rule, text)


def tokenizer_cuts(rule: SpliceRule, text: str, at: int = 0, tokens_before: int = 0) -> Cuts | None:
    """:func:`cuts` from the tokenizer's own encoding, cut positions and token counts counted from
    ``at`` and ``tokens_before`` (where ``text`` lies in a longer one)."""
    if rule.added is not None and rule.added.found_in(text):
        return None
    if any(not unicodedata.is_normalized(form, text) for form in rule.unicode_forms):
        return None
    if rule.normalizes and len(rule.backend.normalizer.normalize_str(text)) != len(text):
        return None
    encoding = rule.backend.encode(text, add_special_tokens=False)
    word_ids, offsets = encoding.word_ids, encoding.offsets
    pre_token_starts = _pre_token_starts(rule, text) if rule.trims_offsets else None
    starts, firsts = [at], [tokens_before]
    for index in range(1, len(word_ids)):
        word = word_ids[index]
        if word is None or word == word_ids[index - 1]:
            continue  # not the first token of a pre-token
        start = pre_token_starts[word] if pre_token_starts is not None else offsets[index][0]
        if at + start > starts[-1] and (not rule.normalizes or text[start].isascii()):
            starts.append(at + start)
            firsts.append(tokens_before + index)
    return Cuts(encoding.ids, starts, firsts)


def _pre_token_starts(rule: SpliceRule, text: str) -> list[int]:
    normalized = rule.backend.normalizer.normalize_str(text) if rule.normalizes else text
    return [start for _, (start, _) in rule.backend.pre_tokenizer.pre_tokenize_str(normalized)]


def common_text_length(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings (compared in C, as integers)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    if a.isascii() and b.isascii():
        width, left, right = 1, a[:n].encode("ascii"), b[:n].encode("ascii")
    else:
        width, left, right = 4, a[:n].encode("utf-32-be"), b[:n].encode("utf-32-be")
    differ = int.from_bytes(left, "big") ^ int.from_bytes(right, "big")
    return (len(left) * 8 - differ.bit_length()) // 8 // width
