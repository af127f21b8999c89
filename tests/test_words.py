"""ASCII text tokenized pre-token by pre-token equals the tokenizer's own ids and cuts.

Hypothesis draws ASCII texts over every character (control characters, the 0x1c-0x1f separators
Python's ``\\s`` would treat as space, apostrophes and contractions, whitespace runs before words),
for the byte-level tokenizers the fast path takes (GPT-2 regex with a BOS, a Llama-3/Qwen-style
split regex under NFC, SmolLM2's real tokenizer).
"""

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from invscale.scoring import words
from invscale.scoring.splice import splice_rule
from invscale.scoring.words import GPT2_PATTERN, Untranslatable, translate
from test_splice import TOKENIZERS

FAST = ["bytelevel-bos", "regex-nfc", "smollm2"]
PIECES = [chr(c) for c in range(128)] + ["'s", "'S", "'ll", "'re", " the", "  ", "\n\n", " \n", "\r\n", "123",
                                         "4567", "Answer:", " A", "dWhat", "x'y", " '", "\x1c ", "\t\t"]
ascii_text = st.lists(st.sampled_from(PIECES), min_size=0, max_size=30).map("".join)
_built = {}


@pytest.fixture(params=FAST, ids=FAST)
def fast(request):
    if request.param == "smollm2":
        request.applymarker(pytest.mark.smollm2)
    if request.param not in _built:
        tokenizer = TOKENIZERS[request.param]()
        _built[request.param] = (tokenizer, splice_rule(tokenizer))
    return _built[request.param]


def test_the_fast_path_is_taken_by_byte_level_tokenizers_only(fast):
    _, rule = fast
    assert rule.words is not None
    assert splice_rule(TOKENIZERS["sentencepiece-split"]()).words is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ascii_text)
def test_ids_and_cuts_equal_the_tokenizers(fast, text):
    _, rule = fast
    backend = rule.backend
    found = rule.words.encode(text)
    if rule.added is not None and rule.added.found_in(text):
        assert found is None
        return
    ids, starts, firsts = found
    encoding = backend.encode(text, add_special_tokens=False)
    assert ids == encoding.ids
    assert rule.words.ids(text) == encoding.ids
    pieces = backend.pre_tokenizer.pre_tokenize_str(text)
    assert starts == ([start for _, (start, _) in pieces] or [0])
    # each pre-token's tokens (BPE of the mapped piece) begin at its first token index
    ends = firsts[1:] + [len(ids)]
    assert [ids[a:b] for a, b in zip(firsts, ends)][:len(pieces)] == [
        [token.id for token in backend.model.tokenize(piece)] for piece, _ in pieces]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=ascii_text, tail=ascii_text, data=st.data())
def test_extending_a_text_from_a_cut_it_shares(fast, head, tail, data):
    """A text sharing a prefix with another is tokenized from the other's cuts up to the last
    pre-token start the cut rule allows before where they part: the same as tokenizing it whole."""
    _, rule = fast
    before, text = head + tail, head + data.draw(ascii_text)
    first = rule.words.encode(before)
    whole = rule.words.encode(text)
    if first is None or whole is None:
        return
    shared = rule.cut.limit(before, len(head))
    index = max(i for i, start in enumerate(first[1]) if start <= shared) if shared >= 0 else 0
    assert rule.words.extend(text, first[1][index], *first, index)
    assert first == whole  # the lists were turned into the text's own, in place


def test_non_ascii_text_and_added_tokens_are_left_to_the_tokenizer(fast):
    _, rule = fast
    assert rule.words.encode("caf\u00e9 au lait") is None
    if rule.added is not None:
        content = rule.added.contents[0]
        assert rule.words.encode(f"a {content} b") is None


def test_translation_of_the_known_patterns():
    assert re.compile(translate(GPT2_PATTERN)).findall("it's  a\tb 12x\x1c") == ["it", "'s", " ", " a", "\t", "b", " 12",
                                                                                  "x", "\x1c"]
    llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    assert re.compile(translate(llama3)).findall("IT'S 12345\n\n x") == ["IT", "'S", " ", "123", "45", "\n\n", " x"]


@pytest.mark.parametrize("pattern", [r"\w+", r"(?<=a)b", r"\p{Lu}+", r"[\S]+", r"\bx"])
def test_constructs_without_an_exact_translation_are_refused(pattern):
    with pytest.raises(Untranslatable):
        translate(pattern)


def test_a_translation_that_disagrees_with_the_tokenizer_is_not_used(fast, monkeypatch, tmp_path):
    """Were the translation wrong (here: Python's own \\s, which takes 0x1c-0x1f as space), the probe
    would catch it and the tokenizer's own path would be taken; the failure is not cached."""
    tokenizer, _ = fast
    monkeypatch.setenv("INVSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(words, "_SPACE", r"\s")
    monkeypatch.setattr(words, "_IN_CLASS", {**words._IN_CLASS, r"\s": r"\s"})
    monkeypatch.setattr(words, "_OUTSIDE", {**words._OUTSIDE, r"\s": r"\s", r"\S": r"\S"})
    monkeypatch.setattr(words, "_translations", {})
    assert splice_rule(tokenizer).words is None
    assert not (tmp_path / words.CHECK_KIND).exists()


def test_a_passed_check_is_kept_for_later_processes(fast, monkeypatch, tmp_path):
    tokenizer, _ = fast
    monkeypatch.setenv("INVSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(words, "_translations", {})
    assert splice_rule(tokenizer).words is not None
    assert len(list((tmp_path / words.CHECK_KIND).iterdir())) == 1
    monkeypatch.setattr(words, "_translations", {})  # a new process: the pass is found, the probe not run
    monkeypatch.setattr(words, "agrees_on", lambda *args: pytest.fail("the probe ran again"))
    assert splice_rule(tokenizer).words is not None


def test_an_unwritable_cache_only_costs_the_check(fast, monkeypatch, tmp_path):
    tokenizer, _ = fast
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("INVSCALE_CACHE", str(blocker))
    monkeypatch.setattr(words, "_translations", {})
    assert splice_rule(tokenizer).words is not None


def test_a_pass_is_kept_for_the_same_source_only(fast, monkeypatch, tmp_path):
    """An edit to the module that translates, probes and checks invalidates earlier passes; a module
    whose source cannot be read checks every time and keeps nothing."""
    tokenizer, _ = fast
    cache = tmp_path / "cache"
    monkeypatch.setenv("INVSCALE_CACHE", str(cache))
    monkeypatch.setattr(words, "_translations", {})
    assert splice_rule(tokenizer).words is not None
    probes, real = [], words.agrees_on
    monkeypatch.setattr(words, "agrees_on", lambda *args: probes.append(1) or real(*args))
    edited = tmp_path / "words.py"
    edited.write_bytes(Path(words.__file__).read_bytes() + b"\n# edited\n")
    for source in (edited, tmp_path / "missing.py"):
        monkeypatch.setattr(words, "__file__", str(source))
        monkeypatch.setattr(words, "_translations", {})
        assert splice_rule(tokenizer).words is not None
    assert probes == [1, 1] and len(list((cache / words.CHECK_KIND).iterdir())) == 2
