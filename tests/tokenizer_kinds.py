"""Every kind of tokenizer the splice must be exact for (or refuse), built locally, and adversarial text.

Each kind is a BPE trained with ``tokenizers`` on pseudo-English plus the adversarial pieces below
(so that its merges cross newlines, indentation and digits as real vocabularies do), in four
variants: with and without a BOS post-processor, with and without added tokens that strip
whitespace (``lstrip``, ``rstrip``) or match only whole words (``single_word``).
"""

from __future__ import annotations

import random

from invscale.tiny import training_corpus

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

WHITESPACE = ["\n", "\n\n", "\n\n\n", " \n", "  \n", "\n ", "\n    ", "\n        ", " " * 9, "\t", "\t\t", "\r\n",
              "\r", " \t", "\n\t", "  ", "   ", " ", "\x0b", "\x0c", "\x1c", "\x1f"]
WORDS = ["the", "The", "answer", "Answer:", "Question", "x", "a", "is", "word", "sword", "words", "don", "t", "THE",
         "q", "def", "return"]
NASTY = WHITESPACE + WORDS + [
    "'s", "'S", "'ll", "n't", "'re", "'", "''", "1", "12", "123", "1234", "12345678", "0", "3.14", ",", ".", ":",
    "?", "!", "(", ")", "==", "->", "_", "-", "é", "e\u0301", "\u0301", "ñ", "İ", "ß", "\u00a0", "\u200b", "\u200d",
    "\ufeff", "\u2028", "\u2029", "\u0085", "\u3000", "\U0001f600", "\U0001f44d\U0001f3fd", "中", "文字", "\u3002",
    "▁", "▁x", "<0x41>", "<s>", "</s>", "<|endoftext|>", "<|bos|>",
    # added tokens of the variants, whole and in halves that may join across a junction
    "[MASK]", "[MA", "SK]", "<rs>", "<r", "s>", "wordy", "word", "y",
]
ADDED = (("[MASK]", dict(lstrip=True, special=True)), ("<rs>", dict(rstrip=True, special=True)),
         ("wordy", dict(single_word=True)))


def whitespace_run(generator: random.Random) -> str:
    """A run of 1-20 spaces, tabs, newlines and carriage returns (mostly spaces), as indentation
    and blank lines make."""
    return "".join(generator.choices(" \t\n\r", weights=(12, 1, 3, 1), k=generator.randint(1, 20)))


def nasty_text(generator: random.Random, low: int, high: int) -> str:
    """A run of adversarial pieces, mostly words and whitespace around them."""
    pieces = []
    for _ in range(generator.randint(low, high)):
        pick = generator.random()
        pool = WHITESPACE if pick < 0.3 else WORDS if pick < 0.55 else NASTY
        piece = whitespace_run(generator) if pick < 0.1 else generator.choice(pool)
        pieces.append((" " + piece) if pool is WORDS and generator.random() < 0.5 else piece)
    return "".join(pieces)


def nasty_pairs(seed: int, n_contexts: int) -> list[tuple[str, str]]:
    """(context, continuation) pairs of a dataset built to break splicing: contexts sharing a
    preface in groups, growing out of each other (cut anywhere, then new text), ending in
    whitespace runs, indentation or added tokens' halves; continuations that start with
    newlines, spaces, digits, contractions or added tokens."""
    generator = random.Random(seed)
    contexts: list[str] = []
    preface = nasty_text(generator, 0, 12)
    while len(contexts) < n_contexts:
        if contexts and generator.random() < 0.4:
            earlier = generator.choice(contexts)
            context = earlier[:generator.randint(0, len(earlier))] + nasty_text(generator, 0, 6)
        else:
            if generator.random() < 0.1:
                preface = nasty_text(generator, 0, 12)
            context = preface + nasty_text(generator, 0, 10)
        if generator.random() < 0.4:
            context += whitespace_run(generator)
        contexts.append(context)
    pairs = []
    for context in contexts:
        for _ in range(generator.randint(1, 4)):
            continuation = nasty_text(generator, 1, 3)
            if generator.random() < 0.25:
                continuation = whitespace_run(generator) + continuation
            pairs.append((context, continuation))
    return pairs


def _corpus() -> list[str]:
    generator = random.Random(7)
    code = ["def f(x):\n    return x\n\n", "if a:\n        b = 1\n    \n", "\n\n\n    \n  \t\n", "x  \n\n  y",
            "Answer:\n\n  A\n   B", "1234567 123 12 1"]
    blank_lines = ["x" + "\n" + " " * k + "\n" + "\t" * (k % 3) + "\n" * (k % 2) + " y" for k in range(1, 13)]
    return (training_corpus(1500, seed=3) + code * 60 + blank_lines * 40
            + [nasty_text(generator, 5, 30) for _ in range(600)])


def _bpe(kind: str):
    """The trained backend of a kind (no post-processor, no added tokens)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    byte_level = pre_tokenizers.ByteLevel.alphabet()
    special = ["<unk>", "<|bos|>"]
    if kind.startswith("metaspace") or kind == "gemma":
        tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
        special += [f"<0x{i:02X}>" for i in range(256)]
        alphabet: list[str] = []
        if kind == "gemma":  # a normalizer and nothing else: the whole text is one pre-token
            tokenizer.normalizer = normalizers.Replace(" ", "▁")
        else:
            scheme = kind.split("-")[1]
            tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
        tokenizer.decoder = decoders.Metaspace()
    else:
        tokenizer = Tokenizer(models.BPE())
        alphabet = byte_level
        if kind in ("neox", "qwen2"):
            tokenizer.normalizer = normalizers.NFC()
        if kind in ("gpt2", "neox"):
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            pattern = LLAMA3_PATTERN if kind == "llama3" else QWEN2_PATTERN
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=special, show_progress=False, initial_alphabet=alphabet)
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


KINDS = ("gpt2", "neox", "llama3", "qwen2", "metaspace-first", "metaspace-always", "metaspace-never", "gemma")
SPLICED = {"gpt2", "neox", "llama3", "qwen2", "metaspace-first", "metaspace-always", "metaspace-never"}
_trained: dict[str, str] = {}


def build(kind: str, bos: bool, added: bool):
    """A transformers tokenizer of ``kind``: with a BOS before every text or not, with the added
    tokens of :data:`ADDED` or not."""
    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    if kind not in _trained:
        _trained[kind] = _bpe(kind).to_str()
    tokenizer = Tokenizer.from_str(_trained[kind])
    steps = [processors.ByteLevel(trim_offsets=True)] if kind == "neox" else []
    if bos:
        steps.append(processors.TemplateProcessing(single="<|bos|> $A", pair="<|bos|> $A $B",
                                                   special_tokens=[("<|bos|>", tokenizer.token_to_id("<|bos|>"))]))
    if steps:
        tokenizer.post_processor = steps[0] if len(steps) == 1 else processors.Sequence(steps)
    if added:
        tokenizer.add_tokens([AddedToken(content, **options) for content, options in ADDED])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|bos|>" if bos else None,
                                   unk_token="<unk>")


VARIANTS = [(kind, bos, added) for kind in KINDS for bos in (True, False) for added in (False, True)]


def variant_id(variant) -> str:
    kind, bos, added = variant
    return f"{kind}{'-bos' if bos else ''}{'-added' if added else ''}"
