"""Joint tokens from unique text equal whole-string tokenization, for every kind of tokenizer.

Hypothesis draws datasets of (context, continuation) pairs whose contexts share a random preface:
junctions inside words, no leading space, whitespace runs, newlines, digits, punctuation, emoji,
CJK, combining marks, contexts that end in a space, added tokens formed across the junction. Each must give exactly the tokens of the
joined string (and the continuation's own token count), whether the pair was spliced or took the
whole-string path; and the splice path must actually be taken where the tokenizer allows it.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from invscale.scoring.splice import splice_rule
from invscale.scoring.tokenize import PairTokenizer
from invscale.tiny import training_corpus

PIECES = ["a", "b", "the", "The", "re", "ing", " ", "  ", "   ", "\n", "\n\n", "\t", " \n", "1", "23", "4567", "0",
          ",", ".", "?", "'s", "'", "!", "-", ":", "=", "====", "_", "é", "e\u0301", "\u0301", "中", "文字", "\u3002",
          "\U0001f600", "\U0001f44d\U0001f3fd", "Answer:", " A", " B", " answer", "ü", "ß", "İ", "\u00a0",
          # pieces of added tokens (OPT's </s>, <pad>; SmolLM2's <|im_end|>), which may form across a junction
          "</", "s>", "<pad>", "<|im_", "end|>", "<|im_end|>"]

text = st.lists(st.sampled_from(PIECES), min_size=0, max_size=24).map("".join)
short = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join)


@st.composite
def datasets(draw):
    """Pairs of a small dataset: contexts = shared preface + own text; a few continuations each."""
    preface = draw(text)
    pairs = []
    for _ in range(draw(st.integers(1, 5))):
        context = preface + draw(text)
        for continuation in draw(st.lists(short, min_size=1, max_size=4)):
            pairs.append((context, continuation))
    return pairs


@st.composite
def branching_datasets(draw):
    """Pairs whose contexts grow out of each other (a prefix of an earlier context, cut anywhere,
    then new text), so each context shares text with its neighbour in sorted order."""
    contexts = [draw(text)]
    for _ in range(draw(st.integers(1, 7))):
        earlier = draw(st.sampled_from(contexts))
        contexts.append(earlier[:draw(st.integers(0, len(earlier)))] + draw(text))
    return [(context, continuation) for context in contexts
            for continuation in draw(st.lists(short, min_size=1, max_size=3))]


def _corpus():
    extra = ["café naïve e\u0301 中文字 \U0001f600 ====  \n\n 1234567 İß ü", "Answer: A\nQuestion: the thing?"] * 50
    return training_corpus(2000, seed=3) + extra


def bytelevel_bos():
    """OPT/GPT-2 style: byte-level BPE with the GPT-2 regex, a BOS token before every text."""
    import tempfile

    from invscale.tiny import train_tokenizer

    return train_tokenizer(tempfile.mkdtemp(), vocab_size=600)


def _trained(model, normalizer, pre_tokenizer, decoder, special, bos, vocab_size=700, alphabet=()):
    from tokenizers import Tokenizer, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(model)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoder
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=list(alphabet))
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    if bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, unk_token="<unk>")


def sentencepiece_style(split: bool):
    """Llama-2 style: Metaspace (prepend once), BPE with byte fallback, <s> before every text."""
    from tokenizers import decoders, models, pre_tokenizers

    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    return _trained(models.BPE(byte_fallback=True, unk_token="<unk>"), None,
                    pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=split),
                    decoders.Metaspace(), ["<unk>", "<s>", "</s>"] + bytes_, "<s>")


def regex_nfc():
    """Llama-3/Qwen style: NFC, a digit-grouping split regex, then byte-level BPE; no BOS."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers

    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    pre = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return _trained(models.BPE(), normalizers.NFC(), pre, decoders.ByteLevel(), ["<|endoftext|>"], None,
                    alphabet=pre_tokenizers.ByteLevel.alphabet())


def smollm2():
    from transformers import AutoTokenizer

    from invscale.models import ModelLoadError, _packaged_smollm2

    try:
        directory, gguf = _packaged_smollm2()
    except ModelLoadError as exc:
        pytest.skip(str(exc))
    return AutoTokenizer.from_pretrained(directory, gguf_file=gguf)


TOKENIZERS = {"bytelevel-bos": bytelevel_bos, "sentencepiece-split": lambda: sentencepiece_style(True),
              "sentencepiece-whole-string": lambda: sentencepiece_style(False), "regex-nfc": regex_nfc,
              "smollm2": smollm2}
SPLICED = {"bytelevel-bos", "sentencepiece-split", "regex-nfc", "smollm2"}
_built = {}


@pytest.fixture(params=list(TOKENIZERS), ids=list(TOKENIZERS))
def tokenizer(request):
    if request.param == "smollm2":
        request.applymarker(pytest.mark.smollm2)
    if request.param not in _built:
        _built[request.param] = TOKENIZERS[request.param]()
    return request.param, _built[request.param]


def whole(tokenizer, context, continuation):
    return tuple(tokenizer(context + continuation)["input_ids"]), len(tokenizer(continuation, add_special_tokens=False)["input_ids"])


def test_splice_rule_recognises_the_tokenizers_it_can_splice(tokenizer):
    name, tok = tokenizer
    assert (splice_rule(tok) is not None) == (name in SPLICED)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=datasets())
def test_joint_tokens_equal_whole_string_tokens(tokenizer, pairs):
    _, tok = tokenizer
    pair_tokenizer = PairTokenizer(tok, [context for context, _ in pairs])
    sequences = pair_tokenizer.sequences(pairs)
    for (context, continuation), sequence in zip(pairs, sequences):
        assert (sequence.tokens, sequence.n_target) == whole(tok, context, continuation), (context, continuation)
        assert sequence.tokens[:len(pair_tokenizer.preface)] == pair_tokenizer.preface


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=branching_datasets())
def test_contexts_tokenized_from_their_neighbours_equal_whole_strings(tokenizer, pairs):
    _, tok = tokenizer
    pair_tokenizer = PairTokenizer(tok, [context for context, _ in pairs])
    for (context, continuation), sequence in zip(pairs, pair_tokenizer.sequences(pairs)):
        assert (sequence.tokens, sequence.n_target) == whole(tok, context, continuation), (context, continuation)


def test_a_context_reuses_its_neighbours_tokens(tokenizer, monkeypatch):
    """Only the text a context does not share with the one before it (from the last safe cut in
    the shared text on) is tokenized."""
    import invscale.scoring.splice as splice_module
    import invscale.scoring.tokenize as tokenize_module

    name, tok = tokenizer
    shared = "Here is a long worked example that every question repeats word for word. " * 4
    contexts = ["Intro. " + shared + f"Question {n}: is {n} odd?\nAnswer:" for n in range(10, 30)]
    pair_tokenizer = PairTokenizer(tok, contexts + ["Other intro."])
    tokenized = []  # the length of each context text handed to a tokenizer
    words = pair_tokenizer.rule.words if pair_tokenizer.rule is not None else None
    if words is not None:  # ASCII text of a byte-level tokenizer: every context's text goes through here
        original_extend = words.extend
        monkeypatch.setattr(words, "extend", lambda text, cut, *rest: (tokenized.append(len(text) - cut),
                                                                       original_extend(text, cut, *rest))[1])
    else:  # the tokenizer's own encoding, the first context's through cuts(), the others' directly
        original_cuts = splice_module.tokenizer_cuts

        def spy(rule, text, *rest):
            tokenized.append(len(text))
            return original_cuts(rule, text, *rest)

        monkeypatch.setattr(splice_module, "tokenizer_cuts", spy)
        monkeypatch.setattr(tokenize_module, "tokenizer_cuts", spy)
    pairs = [(c, k) for c in contexts for k in (" yes", " no")]
    sequences = pair_tokenizer.sequences(pairs)
    assert [(s.tokens, s.n_target) for s in sequences] == [whole(tok, c, k) for c, k in pairs]
    if name in SPLICED:
        assert len(tokenized) == len(contexts) and sorted(tokenized)[-2] < 40  # all but the first: the question


def test_splice_is_taken_on_a_real_dataset(tokenizer):
    """On the prize format (shared instructions, a question, lettered options) the splice path is
    the one taken, and the preface is most of the instructions."""
    name, tok = tokenizer
    instructions = "Answer each question with the letter of the right option.\n\n"
    pairs = [(instructions + f"Question: what is {a} + {b}?\nA. {a + b}\nB. {a * b}\nAnswer:", option)
             for a in range(3, 30, 4) for b in range(2, 9, 3) for option in (" A", " B")]
    pair_tokenizer = PairTokenizer(tok, [context for context, _ in pairs])
    sequences = pair_tokenizer.sequences(pairs)
    assert [(s.tokens, s.n_target) for s in sequences] == [whole(tok, c, k) for c, k in pairs]
    if name in SPLICED:
        assert pair_tokenizer.spliced == len(pairs) and pair_tokenizer.whole == 0
        assert len(pair_tokenizer.preface) >= len(tok(instructions, add_special_tokens=False)["input_ids"]) // 2
    else:
        assert pair_tokenizer.whole == len(pairs)
