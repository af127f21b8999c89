"""Tiny random models of every causal LM architecture transformers ships, with their quirks on.

Each config is shrunk (hidden 64, 2-3 layers, small vocabulary) and, where the architecture has
them, switched to its features: a sliding window smaller than the prompts (alternating with full
layers where the architecture alternates), attention and final-logit soft caps, logit scaling,
partial rotary, biases, untied heads, grouped-query attention, mixtures of experts. The conformance
test scores each with the trie scorer and with one plain forward pass per option.

``python tests/conformance.py [model_type ...]`` prints, for every architecture, whether invscale's
table supports or refuses it and, ignoring the table, how far the trie scorer lands from the
reference: how the table in invscale/scoring/architectures.py is kept up to date.
"""

from __future__ import annotations

import sys
import time
import warnings

import torch

WINDOW = 8  # tokens; the random prompts are 10 to 60 tokens long

# applied when the architecture's config has the attribute (names differ between families)
SHRINK = dict(
    hidden_size=64, n_embd=64, d_model=64, num_hidden_layers=3, n_layer=3, num_layers=3,
    num_attention_heads=4, n_head=4, num_heads=4, num_key_value_heads=2, head_dim=16,
    intermediate_size=128, ffn_dim=128, n_inner=128, max_position_embeddings=512, n_positions=512, n_ctx=512,
    pad_token_id=1, bos_token_id=2, eos_token_id=2,
    # mixtures of experts: few small experts, two per token
    num_experts=4, num_local_experts=4, n_routed_experts=4, moe_intermediate_size=32, num_experts_per_tok=2,
    shared_expert_intermediate_size=32, n_shared_experts=1, n_group=1, topk_group=1, first_k_dense_replace=1,
    # multi-head latent attention (DeepSeek-V2/V3 and kin): small ranks, value heads unlike query heads
    q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=12,
    # features: on wherever the architecture has them
    sliding_window=WINDOW, use_sliding_window=True, max_window_layers=1, attn_logit_softcapping=4.0,
    final_logit_softcapping=6.0, logits_scaling=2.5, logit_scale=0.4, partial_rotary_factor=0.5,
    attention_bias=True, tie_word_embeddings=False,
)

# per architecture: overrides on top of SHRINK (None: the shrunk defaults are right)
QUIRKS: dict[str, dict] = {
    "gpt_neo": dict(num_layers=2, attention_types=[[["global", "local"], 1]], window_size=WINDOW,
                    intermediate_size=128),
    "gptj": dict(rotary_dim=8),
    "codegen": dict(rotary_dim=8),
    "falcon": dict(num_kv_heads=2, new_decoder_architecture=True, parallel_attn=True, alibi=False, bias=True),
    "gemma2": dict(num_hidden_layers=3),  # layers alternate sliding, full, sliding
    # Gemma3 keeps attn_logit_softcapping in its config but never applies it
    "gemma3_text": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                        attn_logit_softcapping=None),
    "mistral": dict(),
    "qwen2": dict(layer_types=["full_attention", "sliding_attention", "sliding_attention"]),
    "phi3": dict(partial_rotary_factor=0.5),
    "starcoder2": dict(use_bias=True),
    **dict.fromkeys(("deepseek_v2", "deepseek_v3", "glm4_moe_lite", "youtu", "longcat_flash", "minicpm3", "axk1"),
                    dict(head_dim=8, num_key_value_heads=4)),  # latent attention: rotary over qk_rope_head_dim
    "qwen2_moe": dict(use_sliding_window=False),  # its window lives in the mask alone: refused when on
    "smollm3": dict(no_rope_layers=[1, 0, 1]),
    "olmo3": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "cohere2": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "exaone4": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
}


def tiny_config(model_type: str, vocab_size: int):
    """The shrunk, features-on config of ``model_type``; raises if the architecture cannot be built
    from a config alone."""
    from transformers import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    defaults = config_class()
    overrides = {name: value for name, value in SHRINK.items() if _has_setting(defaults, name)}
    overrides.update(QUIRKS.get(model_type, {}))
    overrides["vocab_size"] = vocab_size
    config = config_class(**overrides)
    if config.get_text_config() is not config:
        raise ValueError("a composite (multimodal or encoder-decoder) config")
    return config


def _has_setting(config, name: str) -> bool:
    return name in config.to_dict() or name in getattr(config, "attribute_map", {})


def build_tiny(model_type: str, tokenizer, seed: int = 0, max_parameters: int = 5_000_000):
    """A random-init model of ``model_type`` in eval mode (fp32, CPU), weights spread so that scores
    differ clearly between options; raises if it cannot be built or is too big for a test."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, len(tokenizer) + 7)
    with torch.device("meta"):
        count = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    if count > max_parameters:
        raise ValueError(f"{count:,} parameters at the smallest shape the config allows")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def max_difference(model, tokenizer, dataset, backend: str = "sdpa", kernels: str = "torch",
                   max_tokens: int = 96) -> float:
    """Largest |log-prob difference| between the trie scorer and the per-option reference."""
    from invscale.scoring.scorer import ScoringJob
    from reference import reference_logprob

    job = ScoringJob(model, tokenizer, dataset, max_tokens_per_pack=max_tokens, backend=backend, kernels=kernels)
    got = {result["index"]: result["class_logprobs"] for result in job.results()}
    worst = 0.0
    for row in dataset.rows:
        expected = [reference_logprob(model, tokenizer, row.prompt, c) for c in row.classes]
        worst = max([worst] + [abs(a - b) for a, b in zip(got[row.index], expected)])
    return worst


def conformance_rows():
    """Random classification rows with a shared preface, prompts longer than the window."""
    from random_data import as_dataset, random_classification

    return as_dataset(random_classification(3, n_rows=4))


def survey(model_types: list[str]) -> None:
    """Print table verdict and measured difference (table ignored) for each architecture."""
    from unittest import mock

    from invscale.scoring import architectures
    from invscale.tiny import train_tokenizer

    import tempfile

    tokenizer = train_tokenizer(tempfile.mkdtemp())
    dataset = conformance_rows()
    for model_type in model_types:
        began = time.time()
        try:
            architectures.check_architecture(tiny_config(model_type, len(tokenizer) + 7))
            verdict = "supported"
        except Exception as exc:
            verdict = f"refused ({str(exc).splitlines()[0][:80]})"
        try:
            model = build_tiny(model_type, tokenizer)
            with mock.patch.object(architectures, "check_architecture", lambda *_: None), \
                    mock.patch.object(architectures, "check_model_type", lambda *_: None):
                measured = f"max |diff| {max_difference(model, tokenizer, dataset):.2e}"
        except Exception as exc:
            measured = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
        print(f"{model_type:28s} {verdict:40s} {measured}  [{time.time() - began:.1f}s]", flush=True)


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.utils import logging

    logging.set_verbosity_error()
    survey(sys.argv[1:] or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES))
