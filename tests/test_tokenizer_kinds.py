"""Joint tokens equal whole-string tokens on adversarial datasets, for every kind of tokenizer.

Kinds (tests/tokenizer_kinds.py): GPT-2/OPT byte-level; Pythia/NeoX byte-level under NFC with
trimmed offsets; Llama-3's split regex; Qwen2's under NFC; Metaspace with each prepend scheme and
byte fallback; a Gemma-style normalizer-only BPE (refused: whole strings); each with and without a
BOS, with and without lstrip, rstrip and single_word added tokens; and SmolLM2's real tokenizer.
Every row's tokens must equal tokenizing ``context + continuation`` whole, whichever path it took.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from invscale.scoring.splice import splice_rule
from invscale.scoring.tokenize import PairTokenizer
from test_splice import smollm2
from tokenizer_kinds import KINDS, NASTY, SPLICED, VARIANTS, WHITESPACE, build, nasty_pairs, variant_id

_built = {}


def _tokenizer(variant):
    if variant not in _built:
        _built[variant] = smollm2() if variant == "smollm2" else build(*variant)
    return _built[variant]


def differing_rows(tokenizer, pairs) -> list[tuple[str, str, list[str], list[str]]]:
    """The pairs whose joint tokens (or scored token count) differ from whole-string tokenization."""
    sequences = PairTokenizer(tokenizer, [context for context, _ in pairs]).sequences(pairs)
    whole = tokenizer([context + continuation for context, continuation in pairs])["input_ids"]
    counts = tokenizer(sorted({k for _, k in pairs}), add_special_tokens=False)["input_ids"]
    count_of = dict(zip(sorted({k for _, k in pairs}), map(len, counts)))
    return [(context, continuation, tokenizer.convert_ids_to_tokens(list(sequence.tokens)),
             tokenizer.convert_ids_to_tokens(list(tokens)))
            for (context, continuation), sequence, tokens in zip(pairs, sequences, whole)
            if sequence.tokens != tuple(tokens) or sequence.n_target != count_of[continuation]]


@pytest.mark.parametrize("kind", KINDS)
def test_the_splice_is_taken_where_it_is_provable(kind):
    for bos in (True, False):
        for added in (False, True):
            assert (splice_rule(_tokenizer((kind, bos, added))) is not None) == (kind in SPLICED)


REPORTED = [  # the smallest cases found wrong by an outside differential test, each a (kind, bos, added, pairs)
    ("llama3", True, False, [("\n        ", "\n")]),
    ("llama3", False, False, [("\n        ", "\n")]),
    ("qwen2", False, False, [("Q: x\n         ", " \n")]),
    ("qwen2", True, False, [("Question one two three\n" + " " * 9 + rest, k) for rest in ("\tx", "\n")
                            for k in (" b", " c")]),  # reusing a neighbour's tokens, with ordinary classes
    ("llama3", True, True, [("Q: the word is" + " " * 10, "[MASK]")]),
    ("metaspace-first", True, True, [("Q: the word is" + " " * 10, "[MASK]")]),
]


@pytest.mark.parametrize("kind, bos, added, pairs", REPORTED, ids=[f"{c[0]}-{n}" for n, c in enumerate(REPORTED)])
def test_the_reported_cases(kind, bos, added, pairs):
    assert differing_rows(_tokenizer((kind, bos, added)), pairs) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=[variant_id(v) for v in VARIANTS])
def test_seeded_adversarial_datasets(variant):
    assert differing_rows(_tokenizer(variant), nasty_pairs(seed=11, n_contexts=150)) == []


pieces = st.one_of(st.sampled_from(NASTY + WHITESPACE),
                   st.builds(lambda head, n: head + " " * n, st.sampled_from(["\n", "\t", "", "\r\n"]), st.integers(1, 16)))
texts = st.lists(pieces, max_size=12).map("".join)


@st.composite
def datasets(draw):
    """Contexts growing out of each other under a shared preface; a few continuations each."""
    contexts = [draw(texts) + draw(texts)]
    for _ in range(draw(st.integers(0, 5))):
        earlier = draw(st.sampled_from(contexts))
        contexts.append(earlier[:draw(st.integers(0, len(earlier)))] + draw(texts))
    return [(c, k) for c in contexts for k in draw(st.lists(st.lists(pieces, min_size=1, max_size=3).map("".join),
                                                           min_size=1, max_size=3))]


DRAWN = [("llama3", True, True), ("qwen2", False, True), ("neox", True, False), ("metaspace-first", True, True),
         ("metaspace-never", False, True), ("gpt2", False, True)]


@pytest.mark.parametrize("variant", DRAWN, ids=[variant_id(v) for v in DRAWN])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=datasets())
def test_drawn_datasets(variant, pairs):
    assert differing_rows(_tokenizer(variant), pairs) == []


@pytest.mark.heavy
def test_every_kind_on_thousands_of_rows():
    """About 6,000 adversarial rows per tokenizer variant (and SmolLM2's where installed)."""
    variants = VARIANTS + ["smollm2"]
    found = {}
    for number, variant in enumerate(variants):
        try:
            tokenizer = _tokenizer(variant)
        except pytest.skip.Exception:
            continue
        wrong = differing_rows(tokenizer, nasty_pairs(seed=100 + number, n_contexts=2400))
        if wrong:
            found[variant_id(variant) if variant != "smollm2" else variant] = (len(wrong), wrong[:2])
    assert found == {}
