"""Tree attention for attention layers that compute attention in their own code.

Most architectures call transformers' attention interface, where the tree attention plugs in by
name (:mod:`invscale.scoring.attention`). A few compute the attention step inside their own layer;
for those proven exact on the trie, this module routes that step to the tree attention while a
trie runner holds the model, passing the layer's own scale and window, and gives the layer its own
step back afterwards. A layer left unrouted is caught on the first pass
(:func:`invscale.scoring.runner.check_every_layer_attended`).

- ``gpt_neo``: ``GPTNeoSelfAttention._attn`` (scores not scaled by 1/sqrt(head_dim); "local" layers
  see the ``window_size`` positions up to their own, as a sliding window of that length).
"""

from __future__ import annotations

import types
from typing import Callable

import torch

from invscale.scoring import attention


def _gpt_neo_attn(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask=None):
    """GPT-Neo's attention step on the tree: query, key and value [B, heads, L, dim]; the model's
    own causal mask is not needed (the tree attention builds its own)."""
    window = self.config.window_size if self.attention_type == "local" else None
    out, _ = attention.tree_attention_forward(self, query, key, value, scaling=1.0, sliding_window=window)
    return out.transpose(1, 2), None


def _gpt_neo_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoSelfAttention

    return [module for module in model.modules() if type(module) is GPTNeoSelfAttention]


# model_type -> (the layers whose attention step is routed, the step that replaces it)
ROUTES: dict[str, tuple[Callable, Callable]] = {"gpt_neo": (_gpt_neo_layers, _gpt_neo_attn)}


def use_tree_attention(model: torch.nn.Module) -> Callable[[], None]:
    """Make every attention layer of ``model`` run the tree attention: through transformers'
    attention interface, or (for a model type with a route here) by routing its layers' own
    attention step; returns the function that gives the model its own attention back."""
    found = ROUTES.get(model.config.model_type)
    if found is None:
        previous = model.config._attn_implementation
        model.set_attn_implementation(attention.ATTENTION_NAME)
        return lambda: model.set_attn_implementation(previous)
    layers_of, step = found
    layers = [layer for layer in layers_of(model) if "_attn" not in layer.__dict__]
    for layer in layers:
        layer._attn = types.MethodType(step, layer)
        layer.layer_idx = layer.layer_id

    def restore() -> None:
        for layer in layers:
            layer.__dict__.pop("_attn", None)
            layer.__dict__.pop("layer_idx", None)
    return restore
