"""Tiny random OPT checkpoints with a locally trained byte-level BPE tokenizer.

No model hub is needed: these are saved with ``save_pretrained`` and loaded back through the
same path a user's checkpoint takes. They serve as the CLI's built-in default model
(``--model tiny-opt``) and as test fixtures. Weights are random, so scores are meaningless;
only the plumbing and the numerics are real.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from invscale.cache import cache_root

# OPT's special-token layout: <s>=0, <pad>=1, </s>=2 (also OPT's BOS), <unk>=3.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]

_CORPUS_WORDS = (
    "the of and to in is was for on that with as by at from be this have or one had not but what all "
    "were when we there can an your which their said if do will each about how up out them then she many "
    "some so these would other into has more her two like him see time could no make than first been its "
    "who now people my made over did down only way find use may water long little very after words called "
    "just where most know get through back much before go good new write our used me man too any day same "
    "right look think also around another came come work three word must because does part even place well "
    "such here take why things help put years different away again off went old number great tell men say "
    "small every found still between name should home big give air line set own under read last never us "
    "left end along while might next sound below saw something thought both few those always looked show "
    "large often together asked house world going want school important until form food keep children feet "
    "land side without boy once animals life enough took sometimes four head above kind began almost live "
    "page got earth need far hand high year mother light parts country father let night following picture "
    "being study second eyes soon times story boys since white days ever paper hard near sentence better "
    "best across during today others however sure means knew its try told young miles sun ways thing whole "
    "hear example heard several change answer room sea against top turned learn point city play toward five "
    "question choose letter prefer buy dollars lamps probability roll die sided fair expert correct pretend "
    "universe real yes no A B C D Answer Question"
).split()


def training_corpus(n_lines: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English lines (common words, digits, punctuation) to train a BPE on."""
    generator = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n_lines):
        length = int(torch.randint(4, 18, (1,), generator=generator))
        picks = torch.randint(0, len(_CORPUS_WORDS), (length,), generator=generator).tolist()
        words = [_CORPUS_WORDS[i] for i in picks]
        number = int(torch.randint(0, 120, (1,), generator=generator))
        words.insert(int(torch.randint(0, length, (1,), generator=generator)), str(number))
        lines.append(" ".join(words).capitalize() + ("?" if number % 3 == 0 else ".") + "\nAnswer:")
    return lines


def train_tokenizer(directory: str | Path, vocab_size: int = 512, seed: int = 0):
    """Train a byte-level BPE tokenizer that adds ``</s>`` as BOS (as OPT's does); save and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_corpus(seed=seed), trainer=trainer)
    bos_id = bpe.token_to_id("</s>")
    bpe.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A $B", special_tokens=[("</s>", bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def build_tiny_opt(directory: str | Path, seed: int = 0, tokenizer_vocab: int = 512, **config_overrides) -> Path:
    """Save a random-init OPT checkpoint plus tokenizer under ``directory`` and return the path.

    ``config_overrides`` go to ``OPTConfig`` (e.g. ``word_embed_proj_dim=16, do_layer_norm_before=False``
    for the opt-350m shape). The model's vocabulary is padded past the tokenizer's, as OPT's is.
    """
    from transformers import OPTConfig, OPTForCausalLM

    def model_for(tokenizer):
        settings = dict(vocab_size=len(tokenizer) + 13, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        ffn_dim=64, max_position_embeddings=2048, word_embed_proj_dim=32, pad_token_id=1,
                        bos_token_id=2, eos_token_id=2, dropout=0.0, attention_dropout=0.0)
        return OPTForCausalLM(OPTConfig(**{**settings, **config_overrides}))

    return _build(directory, seed, tokenizer_vocab, model_for)


def build_tiny_llama(directory: str | Path, seed: int = 0, tokenizer_vocab: int = 512, **config_overrides) -> Path:
    """Save a random-init Llama checkpoint (rotary positions, grouped-query attention when
    ``num_key_value_heads`` < ``num_attention_heads``) plus tokenizer under ``directory``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def model_for(tokenizer):
        settings = dict(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=2048,
                        pad_token_id=1, bos_token_id=2, eos_token_id=2, tie_word_embeddings=False)
        return LlamaForCausalLM(LlamaConfig(**{**settings, **config_overrides}))

    return _build(directory, seed, tokenizer_vocab, model_for)


def _build(directory: str | Path, seed: int, tokenizer_vocab: int, model_for) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(directory, vocab_size=tokenizer_vocab, seed=seed)
    torch.manual_seed(seed)
    model = model_for(tokenizer).eval()
    _spread_weights(model, seed)
    model.save_pretrained(str(directory))
    return directory


def _spread_weights(model: torch.nn.Module, seed: int) -> None:
    """Random init with std 0.02 gives near-uniform next-token distributions; widen it so that
    scores differ clearly between options and attention patterns are far from uniform."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            elif "bias" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def default_tiny_dir() -> Path:
    """Where the built-in ``tiny-opt`` model is built once and then reused."""
    return cache_root() / "tiny-opt"


def ensure_tiny_opt() -> Path:
    """Build the built-in tiny OPT on first use; return its directory."""
    directory = default_tiny_dir()
    if not (directory / "config.json").exists() or not (directory / "tokenizer.json").exists():
        staging = directory.with_name(directory.name + f".tmp{os.getpid()}")
        build_tiny_opt(staging, hidden_size=64, num_hidden_layers=4, ffn_dim=256, num_attention_heads=4,
                       word_embed_proj_dim=64)
        directory.parent.mkdir(parents=True, exist_ok=True)
        if not directory.exists():
            staging.rename(directory)
    return directory
