"""Which causal LMs the trie scorer computes exactly, why the others take the cache path, and
what is not a causal LM at all.

The trie scorer runs a model's own code on a packed trie of tokens with position ids as depths and
a tree attention mask. That is exact only for models whose every layer mixes tokens through
attention alone, with positions taken from ``position_ids``. This table says, per ``model_type``,
which architectures have been checked exact on the trie against the plain per-option forward pass
with their features switched on (tests/test_conformance.py, on tiny random configs). Every other
causal LM, a model type the table does not know included, is scored on the cache path (the
model's own forward and cache, :mod:`invscale.scoring.cache_runner`); the table says why where it
knows. Only what is not a causal LM (encoders, encoder-decoders, multimodal wrappers) is refused.
"""

from __future__ import annotations

from invscale.kernels.fused_head import LogitTransform

_WINDOW = frozenset({"sliding window"})
_PLAIN = frozenset()

# model_type -> the optional features checked exact for it (transformers 5.23; codegen, falcon,
# gptj and the 5.25 additions with transformers 5.25; gpt_neo, bloom and mpt, their own attention
# code routed to the tree by :mod:`invscale.scoring.own_attention`), a config that
# switches on any other takes the cache path; checked by tests/test_conformance.py. A layer that computes attention outside
# transformers' attention interface (an older release) is caught on the first pass
# (:func:`invscale.scoring.runner.check_every_layer_attended`).
SUPPORTED: dict[str, frozenset[str]] = {
    **dict.fromkeys((
        "apertus1p5_text", "codegen", "exaone", "falcon", "gptj", "internlm3", "minicpm5_moe", "param2moe",
        "sarvam_mla", "sarvam_moe"), _PLAIN),
    **dict.fromkeys((
        "apertus", "arcee", "aria_text", "axk1", "biogpt", "bitnet", "ctrl", "deepseek_v2", "deepseek_v3",
        "ernie4_5", "ernie4_5_moe", "flex_olmo", "gemma", "glm", "glm4", "glm4_moe", "glm4_moe_lite", "gpt-sw3",
        "gpt2", "gpt_bigcode", "gpt_neox", "helium", "hunyuan_v1_dense", "hunyuan_v1_moe", "hy_v3", "iquestcoder",
        "jais2", "jetmoe", "laguna", "llama", "longcat_flash", "mellum", "minimax_m2", "minimax_m3_vl_text",
        "nemotron", "olmo", "olmo2", "olmoe", "opt", "persimmon", "phi", "qwen2_moe", "seed_oss", "solar_open",
        "stablelm", "youtu"), _PLAIN),
    **dict.fromkeys((
        "afmoe", "cwm", "dots1", "exaone4", "exaone_moe", "gpt_neo", "kolibri1", "ministral", "ministral3", "mistral",
        "mixtral", "olmo3", "phi3", "qwen2", "qwen3", "qwen3_moe", "smollm3", "starcoder2"), _WINDOW),
    **dict.fromkeys(("cohere", "granite", "granitemoe", "granitemoeshared", "hyperclovax", "minicpm3"),
                    frozenset({"logit scale"})),
    **dict.fromkeys(("cohere2", "cohere2_moe"), frozenset({"logit scale", "sliding window"})),
    **dict.fromkeys(("gemma2", "vaultgemma"), frozenset({"sliding window", "attention softcap", "final-logit softcap"})),
    "gemma3_text": frozenset({"sliding window", "final-logit softcap"}),
    "beam": frozenset({"sliding window", "final-logit softcap"}),
    "nanochat": frozenset({"final-logit softcap"}),
    **dict.fromkeys(("bloom", "mpt"), frozenset({"ALiBi"})),
}

# why the trie cannot serve each of these architectures (completes "<model_type>: ..."); they take
# the cache path
_TRIE_UNSUITED_GROUPS = {
    "computes attention in its own code, outside transformers' attention interface, so the tree mask "
    "cannot reach it": ("gpt_neox_japanese", "openai-gpt", "xglm"),
    "state-space, recurrent, linear-attention or convolution layers mix tokens in sequence order, which a "
    "packed trie does not keep": (
        "bailing_hybrid", "bamba", "falcon_h1", "falcon_mamba", "granitemoehybrid", "jamba", "kimi_linear",
        "lfm2", "lfm2_moe", "lfm3", "mamba", "mamba2", "minimax", "nemotron_h", "olmo_hybrid", "qwen3_5_moe_text",
        "qwen3_5_text", "qwen3_next", "qwen4_exp_text", "recurrent_gemma", "rwkv", "xlstm", "zamba", "zamba2"),
    "learned attention sinks": ("deepseek_v4", "flint", "gpt_oss", "granite_swa", "granitemoe_swa", "inkling2_text",
                                "mimo_v2_flash"),
    "learned relative position biases": ("inkling_text",),
    "chunked attention": ("llama4_text",),
    "differential attention": ("diffllama",),
    "dynamic-mask attention": ("doge",),
    "key/value states shared across layers": ("gemma3n_text", "gemma4_text", "gemma4_unified_text"),
    "a speech and text model whose configured sliding window its layers never apply": ("moshi",),
}
TRIE_UNSUITED: dict[str, str] = {model_type: reason for reason, types in _TRIE_UNSUITED_GROUPS.items()
                                 for model_type in types}

# what is not a causal LM, though transformers' causal-LM mapping names it: refused on every path
_REFUSED_GROUPS = {
    "an encoder architecture (bidirectional pre-training); not checked exact as a causal LM": (
        "bert", "bert-generation", "big_bird", "camembert", "data2vec-text", "electra", "ernie", "hrm_text",
        "megatron-bert", "modernbert-decoder", "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer",
        "xlm", "xlm-roberta", "xlm-roberta-xl", "xlnet", "xmod", "reformer", "cpmant"),
    "the decoder of an encoder-decoder model": (
        "bart", "bigbird_pegasus", "blenderbot", "blenderbot-small", "marian", "mbart", "musicgen", "musicgen_melody",
        "mvp", "pegasus", "plbart", "prophetnet", "trocr", "whisper"),
    "a multimodal model (score its text model's checkpoint instead)": (
        "emu3", "fuyu", "gemma3", "gemma3n", "gemma4", "gemma4_unified", "gemma4_unified_assistant", "got_ocr2",
        "llama4", "mllama", "moss_transcribe_diarize", "phi4_multimodal", "qwen3_5", "qwen3_5_moe", "qwen4_exp",
        "dots3_note"),
}
REFUSED: dict[str, str] = {model_type: reason for reason, types in _REFUSED_GROUPS.items() for model_type in types}

class UnsupportedModel(ValueError):
    """A model the trie scorer cannot score exactly; the message is one line naming why."""


def config_features(config) -> set[str]:
    """The optional features a config switches on that change how tokens see each other or how the
    head makes logits: ``sliding window``, ``attention softcap``, ``final-logit softcap``,
    ``logit scale``, ``ALiBi`` (position biases: BLOOM's and MPT's always, Falcon's when set)."""
    features = set()
    if getattr(config, "alibi", False) is True or getattr(config, "model_type", None) in ("bloom", "mpt"):
        features.add("ALiBi")
    if sliding_window_in_use(config):
        features.add("sliding window")
    if getattr(config, "attn_logit_softcapping", None) is not None:
        features.add("attention softcap")
    if getattr(config, "final_logit_softcapping", None) is not None:
        features.add("final-logit softcap")
    if _logit_scale(config) != 1.0:
        features.add("logit scale")
    return features


def sliding_window_in_use(config) -> bool:
    """True when some layer of the model attends within a sliding window."""
    return window_length(config) is not None


def window_length(config) -> int | None:
    """The length of the sliding window some layer of the model attends within (GPT-Neo: its local
    layers' ``window_size``), or None when no layer has one."""
    if getattr(config, "model_type", None) == "gpt_neo":
        return config.window_size if "local" in config.attention_layers else None
    window = getattr(config, "sliding_window", None)
    if window is None or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    return window if layer_types is None or "sliding_attention" in layer_types else None


def check_causal_lm(config) -> None:
    """Raise :class:`UnsupportedModel` (one line) when the config's architecture is not a causal LM
    (an encoder, an encoder-decoder's decoder, a multimodal wrapper); every causal LM is scored on
    one path or the other. Cheap enough to run on a checkpoint's config before its weights are read."""
    model_type = _model_type(config)
    if model_type in REFUSED:
        raise UnsupportedModel(f"{model_type}: {REFUSED[model_type]}; invscale cannot score it exactly")


def check_model_type(config) -> None:
    """Raise :class:`UnsupportedModel` (one line) unless the trie is checked exact for the config's
    architecture (see :func:`check_causal_lm` for what no path scores)."""
    check_causal_lm(config)
    model_type = _model_type(config)
    if model_type in TRIE_UNSUITED:
        raise UnsupportedModel(f"{model_type}: {TRIE_UNSUITED[model_type]}; the trie cannot score it exactly")
    if model_type not in SUPPORTED:
        raise UnsupportedModel(f"{model_type}: this architecture has not been checked exact on the trie by "
                               f"invscale's conformance tests")


def _model_type(config) -> str:
    return getattr(config, "model_type", None) or type(config).__name__


def check_architecture(config, longest_sequence: int | None = None) -> None:
    """Raise :class:`UnsupportedModel` (one line) unless the trie scorer is exact for this config on
    sequences of at most ``longest_sequence`` tokens (any length when None).

    A sliding window no sequence reaches changes nothing, so an unchecked window is accepted then;
    a rotary embedding that changes with sequence length (``dynamic``, ``longrope``) is exact only
    while no sequence passes the length where it changes (a pack's positions reach its longest
    sequence's, a plain forward pass each sequence's own)."""
    check_model_type(config)
    model_type = config.model_type
    features = config_features(config)
    if "sliding window" in features and longest_sequence is not None and longest_sequence <= window_length(config):
        features.discard("sliding window")
    unchecked = sorted(features - SUPPORTED[model_type])
    if unchecked:
        raise UnsupportedModel(f"{model_type}: {', '.join(unchecked)} has not been checked exact on the trie for "
                               f"this architecture")
    limit = length_dependent_rope_limit(config)
    if limit is not None and (longest_sequence is None or longest_sequence > limit):
        raise UnsupportedModel(
            f"{model_type}: its rotary embedding changes past {limit} tokens"
            + (f" and the longest sequence has {longest_sequence}" if longest_sequence else "")
            + "; a packed trie would give short sequences the long-sequence embedding")


def length_limit(config) -> int | None:
    """The longest sequence :func:`check_architecture` accepts for this config (None: any): an
    unchecked sliding window's length, or where a length-dependent rotary embedding changes."""
    limits = [length_dependent_rope_limit(config)]
    if "sliding window" in config_features(config) - SUPPORTED.get(config.model_type, frozenset()):
        limits.append(window_length(config))
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def length_dependent_rope_limit(config) -> int | None:
    """The sequence length past which the config's rotary embedding changes (``dynamic`` and
    ``longrope`` rope types: the original maximum positions), or None when it never does."""
    parameters = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    per_layer = parameters.values() if all(isinstance(v, dict) for v in parameters.values()) and parameters else [parameters]
    limits = []
    for rope in per_layer:
        if rope.get("rope_type", rope.get("type")) in ("dynamic", "longrope"):
            limits.append(rope.get("original_max_position_embeddings") or config.max_position_embeddings)
    return min(limits) if limits else None


def supported_markdown() -> str:
    """The README's paragraph listing every architecture the trie serves and the features checked with it."""
    entries = [f"`{t}`" + (f" ({', '.join(sorted(SUPPORTED[t]))})" if SUPPORTED[t] else "") for t in sorted(SUPPORTED)]
    return _fill(", ".join(entries) + ".")


def cache_path_markdown() -> str:
    """The README's list of the architectures the table sends to the cache path, by reason."""
    return "\n".join(_fill(f"- {reason[0].upper()}{reason[1:]}: {', '.join(f'`{t}`' for t in sorted(types))}.",
                            indent="  ") for reason, types in _TRIE_UNSUITED_GROUPS.items())


def refused_markdown() -> str:
    """The README's list of what is refused (not a causal LM), by reason."""
    return "\n".join(_fill(f"- {reason[0].upper()}{reason[1:]}: {', '.join(f'`{t}`' for t in sorted(types))}.",
                            indent="  ") for reason, types in _REFUSED_GROUPS.items())


def _fill(text: str, indent: str = "") -> str:
    import textwrap

    return textwrap.fill(text, width=100, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


# model_type -> how its head scales logits before the softmax (multiplied by the returned factor)
_LOGIT_SCALES = {
    **dict.fromkeys(("cohere", "cohere2", "cohere2_moe"), lambda config: config.logit_scale),
    **dict.fromkeys(("granite", "granitemoe", "granitemoeshared", "granite_swa", "granitemoe_swa", "minicpm3"),
                    lambda config: 1.0 / config.logits_scaling),
    "hyperclovax": lambda config: config.logits_scaling,
}
# model types whose head soft-caps its logits with ``config.final_logit_softcapping``
_FINAL_SOFTCAP = {"gemma2", "gemma3_text", "gemma3n_text", "vaultgemma", "gemma4_text", "gemma4_unified_text", "nanochat", "beam"}


def _logit_scale(config) -> float:
    scale = _LOGIT_SCALES.get(config.model_type)
    return 1.0 if scale is None else float(scale(config))


def logit_transform(config) -> LogitTransform:
    """How the model's head turns ``h·Wᵀ`` into the logits it softmaxes (scale, then soft cap)."""
    softcap = getattr(config, "final_logit_softcapping", None) if config.model_type in _FINAL_SOFTCAP else None
    return LogitTransform(scale=_logit_scale(config), softcap=softcap)
