"""Joint tokens of context + continuation from the tokens of their parts: unique text only.

The prize pipeline tokenizes ``context + continuation`` as one string, and our exactness rests on
those tokens. Tokenizing every pair whole costs the naive text (the shared preface and each prompt
once per option); this module gets the same tokens while tokenizing each distinct piece once.

Why it is exact, for the tokenizers it accepts (:func:`splice_rule`): a BPE model merges only
within a pre-token; the pre-tokenizers accepted (GPT-2/Llama-3-style regexes with ByteLevel,
SentencePiece-style Metaspace that splits before each ``▁``) cut the text left to right, and where
a cut falls depends only on the text up to one character after it (no look-behind, at most one
character of look-ahead); the normalizers accepted act on each character alone (or leave the
text as it is). So a pre-token boundary ``c`` that lies ``MARGIN`` characters or more before the
end of the context is a boundary of ``context + anything`` too, with the same tokens before it,
and the tokens after it are those of ``text[c:]`` tokenized alone. The joint tokens are then
``tokens(context)[:up to c] + tokens(context[c:] + continuation)``; the second part is short and,
in most datasets, the same string for many rows (``"\\nAnswer:" + " A"``), so it is cached.

As a second guard each splice is checked on a window: the text from the pre-token boundary before
``c`` is tokenized too and must reproduce the tokens on both sides of ``c``; where it does not,
that pair takes the whole-string path. A tokenizer the rule does not recognise takes the
whole-string path for everything: slower, never wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MARGIN = 8  # characters between a cut and the end of the text it was found in

_LOOKBEHIND = re.compile(r"\(\?<[=!]|\\b|\\B|\^|\\A|\\G")


@dataclass(frozen=True)
class SpliceRule:
    """How a tokenizer may be spliced: its backend, the special tokens it puts before a text,
    whether its normalizer changes text (then only texts it leaves unchanged are cut), and the
    added tokens that force a text onto the whole-string path."""

    backend: object
    special_prefix: tuple[int, ...]
    normalizes: bool
    added: re.Pattern | None
    margin: int


def splice_rule(tokenizer) -> SpliceRule | None:
    """The splice rule for ``tokenizer``, or None when splicing it cannot be shown exact."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        spec = json.loads(backend.to_str())
    except Exception:  # a backend that cannot describe itself is not one we can reason about
        return None
    if (spec.get("model") or {}).get("type") != "BPE" or spec.get("truncation") or spec.get("padding"):
        return None
    normalizes = spec.get("normalizer") is not None
    if normalizes and not _per_character(spec["normalizer"]):
        return None
    if not _cuts_left_to_right(spec.get("pre_tokenizer")):
        return None
    prefix = _special_prefix(backend)
    if prefix is None:
        return None
    contents = [token["content"] for token in spec.get("added_tokens", []) if token.get("content")]
    added = re.compile("|".join(map(re.escape, sorted(contents, key=len, reverse=True)))) if contents else None
    margin = max([MARGIN] + [len(c) + 1 for c in contents])
    return SpliceRule(backend, prefix, normalizes, added, margin)


def _per_character(normalizer: dict) -> bool:
    """Normalizers that act on each character alone, or compose only with combining marks."""
    kind = normalizer.get("type")
    if kind == "Sequence":
        return all(_per_character(n) for n in normalizer["normalizers"])
    if kind == "Replace":
        pattern = normalizer.get("pattern", {})
        return "String" in pattern and len(pattern["String"]) == 1 and len(normalizer.get("content", "")) == 1
    return kind in ("NFC", "NFKC", "NFD", "NFKD", "Lowercase")


def _cuts_left_to_right(pre_tokenizer: dict | None) -> bool:
    """Pre-tokenizers whose cuts depend on the text up to one character after them."""
    if pre_tokenizer is None:
        return False
    kind = pre_tokenizer.get("type")
    if kind == "Sequence":
        parts = pre_tokenizer["pretokenizers"]
        return bool(parts) and all(_cuts_left_to_right(p) for p in parts)
    if kind == "ByteLevel":
        return not pre_tokenizer.get("add_prefix_space", False)
    if kind == "Split":
        pattern = pre_tokenizer.get("pattern", {})
        regex = pattern.get("Regex")
        return (regex is not None and not _LOOKBEHIND.search(regex) and not pre_tokenizer.get("invert", False)
                and pre_tokenizer.get("behavior") in ("Isolated", "Removed", "MergedWithNext"))
    if kind == "Metaspace":
        return pre_tokenizer.get("split", True) and pre_tokenizer.get("prepend_scheme", "always") in ("first", "never")
    return kind in ("Digits", "Punctuation", "Whitespace", "WhitespaceSplit")


def _special_prefix(backend) -> tuple[int, ...] | None:
    """The ids the tokenizer puts before every text, if it adds special tokens only there."""
    prefix = None
    for probe in ("a", "Hello world", " x\n1"):
        with_special = backend.encode(probe, add_special_tokens=True).ids
        plain = backend.encode(probe, add_special_tokens=False).ids
        if with_special[len(with_special) - len(plain):] != plain:
            return None
        head = tuple(with_special[:len(with_special) - len(plain)])
        if prefix is not None and head != prefix:
            return None
        prefix = head
    return prefix


def last_cut(rule: SpliceRule, text: str) -> tuple[int, int, int] | None:
    """The last safe cut of ``text`` (tokenized without special tokens): (character position,
    tokens before it, character position of the pre-token boundary before it), or None."""
    if len(text) <= rule.margin or (rule.added is not None and rule.added.search(text)):
        return None
    normalized = rule.backend.normalizer.normalize_str(text) if rule.normalizes else text
    if len(normalized) != len(text):
        return None
    starts = [start for _, (start, _) in rule.backend.pre_tokenizer.pre_tokenize_str(normalized)]
    chosen = None
    for index in range(len(starts) - 1, 0, -1):
        start = starts[index]
        if start <= len(text) - rule.margin and (not rule.normalizes or text[start].isascii()):
            chosen = index
            break
    if chosen is None:
        return None
    return starts[chosen], chosen, starts[chosen - 1]


def token_index(word_ids: list, word: int) -> int:
    """Index of the first token of pre-token ``word`` in an encoding's ``word_ids``."""
    for index, owner in enumerate(word_ids):
        if owner is not None and owner >= word:
            return index
    return len(word_ids)
