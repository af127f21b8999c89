"""Tiny random models of every causal LM architecture transformers ships, with their quirks on.

Each config is shrunk (hidden 64, 2-3 layers, small vocabulary) and, where the architecture has
them, switched to its features: a sliding window smaller than the prompts (alternating with full
layers where the architecture alternates), attention and final-logit soft caps, logit scaling,
partial rotary, biases, untied heads, grouped-query attention, mixtures of experts. The conformance
test scores each with the trie scorer and with one plain forward pass per option.

``python tests/conformance.py [model_type ...]`` prints, for every architecture, the path invscale
takes for it (trie, or cache with its probed mode, or refused) and how far that lands from the
reference, and, ignoring the table, how far the trie scorer would land: how the table in
invscale/scoring/architectures.py is kept up to date.
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
    # state-space layers (Mamba-2 and the hybrids): small states and heads, chunks shorter than the prompts
    mamba_n_heads=4, mamba_d_head=32, mamba_d_ssm=128, mamba_d_state=16, mamba_chunk_size=16, ssm_state_size=16,
    mamba_num_heads=4, mamba_head_dim=32, chunk_size=16, n_mamba_heads=4, mamba_headdim=32,
)

# per architecture: overrides on top of SHRINK (None: the shrunk defaults are right)
QUIRKS: dict[str, dict] = {
    "gpt_neo": dict(num_layers=2, num_hidden_layers=2, attention_types=[[["global", "local"], 1]],
                    window_size=WINDOW, intermediate_size=128),
    # hybrids: an attention layer among the linear-attention or state-space ones
    **dict.fromkeys(("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "qwen4_exp_text", "granitemoehybrid"),
                    dict(layer_types=["linear_attention", "full_attention", "linear_attention"])),
    "bailing_hybrid": dict(layer_types=["linear_attention", "full_attention", "linear_attention"],
                           mlp_layer_types=["dense", "sparse", "sparse"], layer_group_size=2, head_dim=8,
                           num_key_value_heads=4),
    "kimi_linear": dict(layer_types=["linear_attention", "full_attention", "linear_attention"],
                        mlp_layer_types=["dense", "sparse", "sparse"], linear_head_dim=16, linear_num_heads=4,
                        head_dim=8, num_key_value_heads=4),
    "jamba": dict(attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1),
    "bamba": dict(attn_layer_indices=[1]),
    "zamba": dict(attn_layer_period=2, attn_layer_offset=1),
    "zamba2": dict(layers_block_type=["linear_attention", "hybrid", "linear_attention"], hybrid_layer_ids=[1]),
    "mamba2": dict(head_dim=32, n_groups=1),
    "nemotron_h": dict(n_groups=1),
    "zaya": dict(num_experts_per_tok=1),
    "internlm3": dict(bias=True, qkv_bias=True),
    "dots3_note_text": dict(num_key_value_heads=4),
    "lfm2_moe": dict(layer_types=["conv", "full_attention", "conv"], num_dense_layers=1),
    "cohere_compass_text": dict(layer_types=["full_attention"] * 3),
    "gemma4_assistant": dict(hidden_size_per_layer_input=0),
    "gemma3n_text": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                         num_kv_shared_layers=1, vocab_size_per_layer_input=600, hidden_size_per_layer_input=8,
                         activation_sparsity_pattern=[0.0] * 3, laurel_rank=8, altup_num_inputs=2),
    "gemma4_text": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                        vocab_size_per_layer_input=600, hidden_size_per_layer_input=8, per_layer_config={},
                        num_kv_shared_layers=1, global_head_dim=16),
    "kolibri1_1": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"], index_layers=[1],
                       kv_source_layers=[0, 1, 2], index_num_heads=2, mlp_only_layers=[0], index_topk=16,
                       index_pool_size=64, index_num_local_tokens=4, index_num_sink_tokens=2),
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
    **dict.fromkeys(("deepseek_v2", "deepseek_v3", "glm4_moe_lite", "youtu", "longcat_flash", "minicpm3", "axk1",
                     "axk2", "deepseek_v32", "glm_moe_dsa", "sarvam_mla"),
                    dict(head_dim=8, num_key_value_heads=4)),  # latent attention: rotary over qk_rope_head_dim
    "qwen2_moe": dict(use_sliding_window=False),  # its window lives in the mask alone: refused when on
    "smollm3": dict(no_rope_layers=[1, 0, 1]),
    "olmo3": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "cohere2": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "exaone4": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
}


# causal LMs whose config cannot be made tiny here without hand help, and why (the conformance test
# fails when one of them builds, so the list cannot go stale)
UNBUILDABLE: dict[str, str] = {
    "blt": "4.6 billion parameters at the smallest shape its config allows (its byte patcher's sizes are fixed)",
    "git": "86 million parameters at the smallest shape its config allows (an image-and-text model's vision tower)",
    "dots3_note_text": "40 million parameters at the smallest shape its config allows",
    "cohere_compass_text": "its config's layer types name no attention its code knows ('full_attention')",
    "dbrx": "its nested attention config lacks rope_theta when built from a config alone",
    "gemma4_assistant": "its config validation refuses every per-layer input size but its default",
    "kolibri1_1": "its config validation refuses a short stack of sliding and full attention layers",
    "qwen4_exp_text": "its indexer sizes have no defaults (None) and its config builds no model from a config alone",
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


def build_tiny(model_type: str, tokenizer, seed: int = 0, max_parameters: int = 20_000_000):
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
                   max_tokens: int = 96, path: str = "trie") -> float:
    """Largest |log-prob difference| between the scorer on ``path`` and the per-option reference."""
    return scored_difference(model, tokenizer, dataset, backend, kernels, max_tokens, path)[0]


def scored_difference(model, tokenizer, dataset, backend: str = "sdpa", kernels: str = "torch",
                      max_tokens: int = 96, path: str = "auto"):
    """(largest |log-prob difference| from the per-option reference, the path the job took)."""
    from invscale.scoring.scorer import ScoringJob
    from reference import reference_logprob

    job = ScoringJob(model, tokenizer, dataset, max_tokens_per_pack=max_tokens, backend=backend, kernels=kernels,
                     path=path)
    got = {result["index"]: result["class_logprobs"] for result in job.results()}
    worst = 0.0
    for row in dataset.rows:
        expected = [reference_logprob(model, tokenizer, row.prompt, c) for c in row.classes]
        worst = max([worst] + [abs(a - b) for a, b in zip(got[row.index], expected)])
    return worst, job.path


def conformance_rows():
    """Random classification rows with a shared preface, prompts longer than the window."""
    from random_data import as_dataset, random_classification

    return as_dataset(random_classification(3, n_rows=4))


def survey(model_types: list[str]) -> None:
    """Print, per architecture, the path taken and its difference from the reference, and what the
    trie alone would give (table ignored)."""
    from unittest import mock

    from invscale.scoring import architectures
    from invscale.tiny import train_tokenizer

    import tempfile

    tokenizer = train_tokenizer(tempfile.mkdtemp())
    dataset = conformance_rows()
    for model_type in model_types:
        began = time.time()
        if model_type in architectures.REFUSED:
            print(f"{model_type:28s} refused ({architectures.REFUSED[model_type][:60]})", flush=True)
            continue
        try:
            model = build_tiny(model_type, tokenizer)
        except Exception as exc:
            print(f"{model_type:28s} not built: {UNBUILDABLE.get(model_type) or first_words(exc)}", flush=True)
            continue
        try:
            worst, path = scored_difference(model, tokenizer, dataset)
            taken = f"{path.name}{f' ({path.mode})' if path.mode else ''} max |diff| {worst:.2e}"
        except Exception as exc:
            taken = f"failed: {first_words(exc)}"
        try:
            with mock.patch.object(architectures, "check_architecture", lambda *_: None), \
                    mock.patch.object(architectures, "check_model_type", lambda *_: None):
                trie = f"trie alone max |diff| {max_difference(model, tokenizer, dataset):.2e}"
        except Exception as exc:
            trie = f"trie alone: {first_words(exc)}"
        print(f"{model_type:28s} {taken:36s} {trie}  [{time.time() - began:.1f}s]", flush=True)


def first_words(exc: Exception) -> str:
    """An exception's kind and the start of its first line."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.utils import logging

    logging.set_verbosity_error()
    survey(sys.argv[1:] or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES))
