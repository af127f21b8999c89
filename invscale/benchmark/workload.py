"""What a benchmark runs on: random-init OPT models at real shapes, and synthetic token workloads.

The synthetic workload writes token ids as space-separated integers and scores them through
:class:`WordIdTokenizer`, so it runs through the scorer's normal text path while controlling the
exact token counts (prompt, options, shared preface).
"""

from __future__ import annotations

import random

import torch

from invscale.data import Dataset, validate_records

OPT_VOCAB = 50272
OPT_SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128),
    "opt-125m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072),
    "opt-350m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096,
                     word_embed_proj_dim=512, do_layer_norm_before=False),
    "opt-1.3b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, ffn_dim=8192),
    "opt-2.7b": dict(hidden_size=2560, num_hidden_layers=32, num_attention_heads=32, ffn_dim=10240),
    "opt-6.7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, ffn_dim=16384),
    "opt-13b": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, ffn_dim=20480),
    "opt-30b": dict(hidden_size=7168, num_hidden_layers=48, num_attention_heads=56, ffn_dim=28672),
}


class WordIdTokenizer:
    """Text of space-separated integers <-> those ids, with OPT's BOS (2)."""

    bos_token_id = 2

    def __call__(self, texts, add_special_tokens=True):
        ids = [[int(word) for word in text.split()] for text in texts]
        return {"input_ids": [[self.bos_token_id] + x if add_special_tokens else x for x in ids]}


def synthetic_dataset(items: int, prompt_len: int, options: int, option_len: int, preface_len: int = 0,
                      seed: int = 0, vocab: int = OPT_VOCAB) -> Dataset:
    """Classification rows of random token ids: a shared preface, a prompt, distinct options."""
    rng = random.Random(seed)

    def words(n):
        return " ".join(str(rng.randrange(4, vocab)) for _ in range(n))

    preface = words(preface_len)
    records = []
    for _ in range(items):
        prompt = " ".join(part for part in (preface, words(prompt_len)) if part)
        classes = [" " + words(option_len) for _ in range(options)]
        records.append({"prompt": prompt, "classes": classes, "answer_index": 0})
    return validate_records("synthetic", records, ["prompt", "classes", "answer_index"])


def opt_config(shape: str):
    """The OPTConfig of ``shape`` (a key of :data:`OPT_SHAPES`)."""
    from transformers import OPTConfig

    settings = dict(vocab_size=OPT_VOCAB, max_position_embeddings=2048,
                    word_embed_proj_dim=OPT_SHAPES[shape]["hidden_size"], **OPT_SHAPES[shape])
    return OPTConfig(**settings)


def build_opt(shape: str, dtype: torch.dtype, device: str | torch.device, seed: int = 0):
    """A random-init OPT causal LM of ``shape`` (no download) in eval mode."""
    from transformers import OPTForCausalLM

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return OPTForCausalLM(opt_config(shape)).eval()
    finally:
        torch.set_default_dtype(previous)


def body_params(model) -> int:
    """Parameters that multiply every token: all but the input/position embeddings and the LM head."""
    head = model.get_output_embeddings().weight
    skipped = {id(head)} | {id(p) for name, p in model.named_parameters() if "embed" in name.split(".")[-2]}
    return sum(p.numel() for p in model.parameters() if id(p) not in skipped)
