"""Token ids of ASCII text from each distinct pre-token's ids: the tokenizer's work, minus its overhead.

A byte-level BPE tokenizer (GPT-2, OPT, Pythia, SmolLM2, Qwen2.5, Llama-3) cuts text into
pre-tokens with one regular expression, maps each pre-token's bytes to characters, then runs BPE on
each pre-token alone. Generated task sets repeat a small vocabulary of pre-tokens (a few thousand
distinct ones in 5,000 rows), so the ids of a text are the ids of its pre-tokens, each computed
once by the tokenizer's own BPE model and cached. What is left per text is one regex pass, in
Python's ``re``, several times faster than the tokenizer's own call with its offsets and encodings.

Why it is exact: on ASCII text the tokenizer's regex (Oniguruma, Unicode classes) and its
translation here agree character class by character class: ``\\p{L}`` is ``A-Za-z``, ``\\p{N}`` is
``0-9``, ``\\s`` is tab, newline, vertical tab, form feed, carriage return and space (not the
separators 0x1c-0x1f, which Python's ``\\s`` would add); both engines backtrack, try alternatives in
order and repeat greedily. Only the regex constructs listed in :func:`translate` are accepted, and
the translation and the byte-to-character map are checked against the tokenizer's own pre-tokenizer
(which returns the mapped pieces) on a probe text holding every ASCII character beside every kind
of neighbour (:func:`word_encoder`; a pass is kept in invscale's cache, so the probe runs once per
pre-tokenizer, version of this module, ``tokenizers`` version and Python version). The normalizers
accepted leave ASCII as it is, and without special tokens nothing else is added. Text with a
non-ASCII character or an added token's content is left to the tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from itertools import accumulate, chain
from operator import attrgetter
from pathlib import Path
from typing import Iterable

import tokenizers

from invscale.cache import settle, settled
from invscale.scoring.added import AddedContents

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_SPACE = r"\t\n\x0b\x0c\r "  # Oniguruma's \s on ASCII
_IN_CLASS = {r"\p{L}": "A-Za-z", r"\p{N}": "0-9", r"\s": _SPACE, r"\d": "0-9"}
_OUTSIDE = {r"\p{L}": "[A-Za-z]", r"\p{N}": "[0-9]", r"\s": f"[{_SPACE}]", r"\S": f"[^{_SPACE}]", r"\d": "[0-9]"}
_LITERAL_ESCAPES = set(r"rnt\'\"-.^$|?*+()[]{}/!:,=<>&%#@~`;_")
_CACHE_LIMIT = 1_000_000  # distinct pre-tokens kept; a text with more is simply re-cached
_TOKEN_ID = attrgetter("id")


class Untranslatable(ValueError):
    """A construct of the tokenizer's regex with no exact ASCII translation here."""


def translate(pattern: str) -> str:
    """The Python ``re`` pattern that cuts ASCII text where Oniguruma cuts it with ``pattern``.

    Accepted: literal characters and escaped punctuation, ``\\p{L}``, ``\\p{N}``, ``\\s``, ``\\d``
    (in and out of classes), ``\\S`` (out of classes), ``\\r``, ``\\n``, ``\\t``, classes and
    negated classes, groups (made non-capturing), ``(?i:``, ``(?:``, look-ahead, quantifiers.
    Anything else raises :class:`Untranslatable`.
    """
    out, index, in_class = [], 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escape = pattern[index:index + 5] if pattern.startswith(r"\p{", index) else pattern[index:index + 2]
            table = _IN_CLASS if in_class else _OUTSIDE
            if escape in table:
                out.append(table[escape])
            elif len(escape) == 2 and escape[1] in _LITERAL_ESCAPES:
                out.append(escape)
            else:
                raise Untranslatable(f"regex escape {escape!r}")
            index += len(escape)
            continue
        if in_class:
            in_class = char != "]"
            out.append(char)
        elif char == "[":
            in_class = True
            out.append(char)
            if pattern.startswith("[^", index):
                out.append("^")
                index += 1
        elif char == "(":
            if pattern.startswith("(?", index):
                group = next((g for g in ("(?i:", "(?:", "(?!", "(?=") if pattern.startswith(g, index)), None)
                if group is None:
                    raise Untranslatable(f"regex group {pattern[index:index + 4]!r}")
                out.append(group)
                index += len(group)
                continue
            out.append("(?:")
        else:
            out.append(char)
        index += 1
    return "".join(out)


PROBE_CASES = ("'s 'S 't 're 'RE 've 'm 'll 'd 'x '' ''s a's b't x 're\n've", "a  b   c\t\td \n\n e \r\n f\x0b\x0cg ",
               "  \n  x 12 345 6789 a1 1a .,;:!? (x) [y] {z} <|a|> </s> ~~~ --- ___ ...", "\t\n \x1c\x1d \x1e\x1f x\x7f\x00 ")


def probe_text() -> str:
    """Every ASCII character beside every kind of neighbour, the regex's special cases, then a
    fixed pseudo-random ASCII run."""
    parts = [f"a{c}7{c}.{c}{c} {c}s\n" for c in map(chr, range(128))]  # a letter, digit, symbol, itself, space
    state, run = 12345, []
    for _ in range(400):  # a linear congruential generator: the same run everywhere
        state = (state * 1103515245 + 12345) % (1 << 31)
        run.append(chr(state >> 24) if state % 3 else " \n'asd19"[state % 9])
    return "".join(PROBE_CASES) + "".join(parts) + "".join(run)


def _byte_level_table() -> dict[int, str]:
    """GPT-2's byte-to-character map (the ByteLevel pre-tokenizer's alphabet), for ASCII bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    others = sorted(set(range(256)).difference(printable))
    mapping = {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}
    return {b: mapping[b] for b in range(128)}


BYTE_LEVEL = str.maketrans(_byte_level_table())


class WordEncoder:
    """Token ids of ASCII texts, pre-token by pre-token, each distinct pre-token tokenized once by
    the tokenizer's own BPE model (after its byte-level character map)."""

    def __init__(self, backend, pattern: re.Pattern, added: AddedContents | None):
        self.backend, self.pattern, self.added = backend, pattern, added
        self._findall, self._tokenize = pattern.findall, backend.model.tokenize
        self._ids: dict[str, tuple[int, ...]] = {}

    def words(self, text: str, start: int = 0) -> list[str] | None:
        """The pre-tokens of ``text[start:]``, or None when the fast path does not apply to it (an added
        token's content in it, or running into it from before ``start``)."""
        rest = text[start:] if start else text
        if not rest.isascii() or (self.added is not None and self.added.found_in(text, start)):
            return None
        words = self._findall(rest)
        if sum(map(len, words)) != len(rest) or "" in words:  # a gap or an empty match: leave it to the tokenizer
            return None
        return words

    def encode(self, text: str) -> tuple[list[int], list[int], list[int]] | None:
        """(ids, each pre-token's start, each pre-token's first token index), or None when ``text``
        must go to the tokenizer."""
        found = ([], [0], [0])
        return found if self.extend(text, 0, *found, 0) else None

    def extend(self, text: str, cut: int, ids: list[int], starts: list[int], firsts: list[int], index: int) -> bool:
        """Turn ``ids``, ``starts`` and ``firsts`` (what :meth:`encode` gives for a text that shares its
        first ``cut`` characters with ``text``, ``cut`` being its pre-token ``index``'s start) into
        ``text``'s, in place: kept up to the cut, then the rest's own. False, the lists untouched,
        when the rest must go to the tokenizer."""
        words = self.words(text, cut)
        if words is None:
            return False
        pieces = self._lookup(words)
        replace_from(ids, starts, firsts, index, chain.from_iterable(pieces), accumulate(map(len, words), initial=cut),
                     accumulate(map(len, pieces), initial=firsts[index]))
        if words:  # the end of the text is no pre-token's start
            starts.pop()
            firsts.pop()
        return True

    def ids(self, text: str) -> list[int] | None:
        """Token ids of ``text`` (no special tokens), or None when it must go to the tokenizer."""
        words = self.words(text)
        return None if words is None else list(chain.from_iterable(self._lookup(words)))

    def _lookup(self, words: list[str]) -> list[tuple[int, ...]]:
        """Each word's ids, from the cache."""
        try:
            return list(map(self._ids.__getitem__, words))
        except KeyError:
            return self._learn(words)

    def _learn(self, words: list[str]) -> list[tuple[int, ...]]:
        """Each word's ids, computing those of words not seen before with the tokenizer's model."""
        known, tokenize = self._ids, self._tokenize
        if len(known) > _CACHE_LIMIT:
            known.clear()
        for word in words:
            if word not in known:
                known[word] = tuple(map(_TOKEN_ID, tokenize(word.translate(BYTE_LEVEL))))
        return list(map(known.__getitem__, words))


def replace_from(ids: list[int], starts: list[int], firsts: list[int], index: int,
                 new_ids: Iterable[int], new_starts: Iterable[int], new_firsts: Iterable[int]) -> None:
    """Keep a text's token lists (ids, pre-token starts, each pre-token's first token) up to its
    pre-token ``index``, that one and all after it dropped, and append the new ones, in place."""
    del ids[firsts[index]:], starts[index:], firsts[index:]
    ids.extend(new_ids)
    starts.extend(new_starts)
    firsts.extend(new_firsts)


_translations: dict[str, re.Pattern | None] = {}
CHECK_KIND = "pre-tokenizer-translations"  # the cache folder of translations that passed the probe


def word_encoder(backend, pre_tokenizer: dict | None, normalizer: dict | None,
                 added: AddedContents | None) -> WordEncoder | None:
    """The fast encoder for ``backend`` (a byte-level BPE tokenizer cut by one regex, normalizing
    nothing ASCII changes), or None when there is none; its regex's translation is checked once per
    process, or found checked in the cache."""
    regex = _regex_of(pre_tokenizer)
    if regex is None or not _ascii_invariant(normalizer):
        return None
    key = json.dumps([pre_tokenizer, normalizer], sort_keys=True)
    if key not in _translations:
        _translations[key] = _checked(backend, pre_tokenizer, regex)
    pattern = _translations[key]
    return None if pattern is None else WordEncoder(backend, pattern, added)


def _checked(backend, pre_tokenizer: dict, regex: str) -> re.Pattern | None:
    """The translated pattern, if it cuts the probe text where the tokenizer's pre-tokenizer does and
    the byte-level map gives the pieces it gives; else None.

    A pass is kept in invscale's cache under a digest of all it rests on (the pre-tokenizer's
    description, the translated pattern, this module's source, which holds the translation, the
    probe and the check, and the ``tokenizers`` and Python versions), so that later processes skip
    the probe; a failure is never kept, nor a pass when this module's source cannot be read."""
    try:
        pattern = re.compile(translate(regex))
    except (Untranslatable, re.error):
        return None
    digest = _check_digest(pre_tokenizer, pattern)
    if digest is not None and settled(CHECK_KIND, digest):
        return pattern
    if not agrees_on(backend, pattern, probe_text()):
        return None
    if digest is not None:
        settle(CHECK_KIND, digest)
    return pattern


def _check_digest(pre_tokenizer: dict, pattern: re.Pattern) -> str | None:
    """The cache key of a check's pass, or None when this module's source cannot be read."""
    try:
        source = Path(__file__).read_bytes()
    except OSError:
        return None
    basis = [pre_tokenizer, pattern.pattern, hashlib.sha256(source).hexdigest(), tokenizers.__version__, sys.version]
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def agrees_on(backend, pattern: re.Pattern, text: str) -> bool:
    """Whether ``pattern`` and the byte-level map give ``text``'s pre-tokens (pieces and starts) as
    ``backend``'s pre-tokenizer gives them, covering all of it."""
    words = pattern.findall(text)
    ours = [(word.translate(BYTE_LEVEL), start) for word, start in zip(words, accumulate(map(len, words), initial=0))]
    theirs = [(piece, start) for piece, (start, _) in backend.pre_tokenizer.pre_tokenize_str(text)]
    return ours == theirs and sum(map(len, words)) == len(text)


def _regex_of(pre_tokenizer: dict | None) -> str | None:
    """The one regex that cuts text into pre-tokens, for the byte-level forms recognised."""
    if pre_tokenizer is None:
        return None
    if pre_tokenizer.get("type") == "Sequence":
        parts = pre_tokenizer["pretokenizers"]
        if len(parts) == 1:
            return _regex_of(parts[0])
        if len(parts) == 2 and parts[0].get("type") == "Split" and _plain_byte_level(parts[1], regex=False):
            split = parts[0]
            if split.get("behavior") == "Isolated" and not split.get("invert", False):
                return split.get("pattern", {}).get("Regex")
        return None
    return GPT2_PATTERN if _plain_byte_level(pre_tokenizer, regex=True) else None


def _plain_byte_level(part: dict, regex: bool) -> bool:
    return (part.get("type") == "ByteLevel" and not part.get("add_prefix_space", False)
            and part.get("use_regex", True) == regex)


def _ascii_invariant(normalizer: dict | None) -> bool:
    """No normalizer, or only Unicode normal forms (which leave ASCII as it is)."""
    if normalizer is None:
        return True
    if normalizer.get("type") == "Sequence":
        return all(_ascii_invariant(n) for n in normalizer["normalizers"])
    return normalizer.get("type") in ("NFC", "NFKC", "NFD", "NFKD")
