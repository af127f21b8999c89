"""The cut rule against the pre-tokenizers themselves: pieces before a cut never depend on what follows.

For two texts that share their first ``s`` characters, the rule's cut in the first (the last
pre-token start at or before ``limit(first, s)``) must be a pre-token start of the second with the
same pieces before it, and the pieces of the second from the cut on must be those of its rest
alone. Checked on each pre-tokenizer's own output, so it does not depend on a vocabulary's merges.
"""

import json

import pytest
from hypothesis import given, settings, strategies as st
from tokenizers import Regex, pre_tokenizers

from invscale.scoring.boundary import GPT2_PATTERN, Reach, Unsupported, cut_rule, parse
from tokenizer_kinds import LLAMA3_PATTERN, NASTY, QWEN2_PATTERN, WHITESPACE

PRE_TOKENIZERS = {
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "llama3": lambda: pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
    "qwen2": lambda: pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
    "metaspace-first": lambda: pre_tokenizers.Metaspace(prepend_scheme="first"),
    "metaspace-always": lambda: pre_tokenizers.Metaspace(prepend_scheme="always"),
    "whitespace": pre_tokenizers.Whitespace,
    "whitespace-split": pre_tokenizers.WhitespaceSplit,
    "digits": lambda: pre_tokenizers.Digits(individual_digits=False),
    "punctuation": pre_tokenizers.Punctuation,
    "split-removed": lambda: pre_tokenizers.Split(Regex(r"\s+"), behavior="removed"),
}
runs = st.one_of(st.text(alphabet=" \t\n\r", min_size=1, max_size=14),  # and indentation, blank lines
                 st.builds(lambda head, n, tail: head + " " * n + tail, st.sampled_from(["", "\n", "\r\n", "\t", "\n\n"]),
                           st.integers(0, 20), st.sampled_from(["", "\n", "\t", " \n", "\r"])))
text = st.lists(st.one_of(st.sampled_from(NASTY + WHITESPACE), runs), max_size=14).map("".join)


def _pieces(pre_tokenizer, text: str) -> list[tuple[str, tuple[int, int]]]:
    return pre_tokenizer.pre_tokenize_str(text)


@pytest.mark.parametrize("name", list(PRE_TOKENIZERS))
@settings(max_examples=300, deadline=None)
@given(shared=text, first_rest=text, second_rest=text)
def test_pieces_before_the_cut_do_not_depend_on_what_follows(name, shared, first_rest, second_rest):
    pre_tokenizer = PRE_TOKENIZERS[name]()
    rule = cut_rule(json.loads(pre_tokenizer.__getstate__()), None)
    first, second = shared + first_rest, shared + second_rest
    first_pieces = _pieces(pre_tokenizer, first)
    starts = [start for _, (start, _) in first_pieces]
    limit = rule.limit(first, len(shared))
    cut = max([start for start in starts if start <= limit], default=0)
    second_pieces = _pieces(pre_tokenizer, second)
    before = [piece for piece in first_pieces if piece[1][0] < cut]
    assert [piece for piece in second_pieces if piece[1][0] < cut] == before
    assert all(end <= cut for _, (_, end) in before)
    if cut and cut < len(second):  # (a cut at the second text's end leaves nothing after it)
        assert cut in [start for _, (start, _) in second_pieces]
        rest = [(piece, (start + cut, end + cut)) for piece, (start, end) in _pieces(pre_tokenizer, second[cut:])]
        assert [piece for piece in second_pieces if piece[1][0] >= cut] == rest


def test_a_bounded_repetition_followed_by_plus_repeats_it():
    """In Oniguruma's Ruby syntax ``{1,3}+`` is not possessive: it repeats the repetition, so a digit
    run is read to its end."""
    assert Reach(r"\p{N}{1,3}+").open("x 12345678", 10) == 2
    assert Reach(r"\p{N}{1,3}").open("x 12345678", 10) == 8


def test_a_whitespace_run_read_to_its_last_newline_is_never_cut():
    """Llama-3's ``\\s*[\\r\\n]+`` reads a whitespace run to its end: no cut inside a run that ends a
    text, however long (the fixed eight-character window cut there)."""
    rule = cut_rule(json.loads(PRE_TOKENIZERS["llama3"]().__getstate__()), None)
    for spaces in (8, 20, 200):
        text = "Question: x\n" + " " * spaces
        assert rule.limit(text, len(text)) <= len("Question: x")
    assert rule.limit("Answer:", 7) == 6  # a letter run ends where ':' is read


def test_normal_forms_end_a_text_at_its_last_ascii_character_and_lstrip_at_its_trailing_whitespace():
    pre = json.loads(PRE_TOKENIZERS["gpt2"]().__getstate__())
    composing = cut_rule(pre, {"type": "NFC"})
    assert composing.limit("the cafe", 8) < 7  # 'e' + a combining accent would compose
    stripping = cut_rule(pre, None, lstrip=True)
    assert stripping.limit("the word is     ", 16) <= len("the word")


@pytest.mark.parametrize("pattern, gapless", [(GPT2_PATTERN, True), (LLAMA3_PATTERN, True), (QWEN2_PATTERN, True),
                                              (r"\w+|[^\w\s]+", False), (r"a|b", False), (r"\s+(?!\S)", False)])
def test_patterns_that_match_at_every_position_are_recognised(pattern, gapless):
    assert Reach(pattern).gapless is gapless


@pytest.mark.parametrize("pattern", [r"\bx", r"(?<=a)b", r"^a", r"a$", r"\p{Lu}+", r"(a)\1", r"[[:alpha:]]", r"(?P<n>a)"])
def test_constructs_that_cannot_be_bounded_are_refused(pattern):
    with pytest.raises(Unsupported):
        parse(pattern)


@pytest.mark.parametrize("pre_tokenizer", [
    None,  # a normalizer-only tokenizer (Gemma style): one pre-token
    {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": r"\s+"}, "behavior": "Isolated",
                                            "invert": False},
                                           {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
    {"type": "Split", "pattern": {"Regex": r"\d+"}, "behavior": "Contiguous", "invert": False},
    {"type": "UnicodeScripts"},
])
def test_pre_tokenizers_that_cannot_be_bounded_give_no_rule(pre_tokenizer):
    with pytest.raises(Unsupported):
        cut_rule(pre_tokenizer, None)
