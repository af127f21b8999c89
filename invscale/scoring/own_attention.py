"""Tree attention for attention layers that compute attention in their own code.

Most architectures call transformers' attention interface, where the tree attention plugs in by
name (:mod:`invscale.scoring.attention`). A few compute attention inside their own layer; for
those proven exact on the trie, this module routes that computation to the tree attention while a
trie runner holds the model, with the layer's own projections, scale, window and position biases,
and gives the layer its own code back afterwards. A layer left unrouted is caught on the first
pass (:func:`invscale.scoring.runner.check_every_layer_attended`).

- ``gpt_neo``: ``GPTNeoSelfAttention._attn``, the attention step (scores not scaled by
  1/sqrt(head_dim); "local" layers see the ``window_size`` positions up to their own).
- ``bloom``: ``BloomAttention.forward`` (ALiBi: the slopes from the model's own
  ``_get_alibi_slopes``, times the key's position; BLOOM's ``beta`` scales them).
- ``mpt``: ``MptAttention.forward`` (ALiBi: the slopes read off the position bias the model
  passes its layers, which it builds from key positions; ``clip_qkv`` and ``softmax_scale`` kept).

ALiBi biases depend on positions alone, so on the trie each score takes the head's slope times
the key's depth-position minus the query's (the same after softmax as a bias from the key's
position alone, which is what these models add).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Callable

import torch

from invscale.scoring import attention


def _gpt_neo_attn(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask=None):
    """GPT-Neo's attention step on the tree: query, key and value [B, heads, L, dim]; the model's
    own causal mask is not needed (the tree attention builds its own)."""
    window = self.config.window_size if self.attention_type == "local" else None
    out, _ = attention.tree_attention_forward(self, query, key, value, scaling=1.0, sliding_window=window)
    return out.transpose(1, 2), None


def _bloom_forward(self, hidden_states: torch.Tensor, residual: torch.Tensor, alibi=None, attention_mask=None,
                   layer_past=None, use_cache: bool = False, output_attentions: bool = False, **kwargs):
    """BLOOM's attention layer on the tree: its fused projection, ALiBi with its own slopes, its
    output projection and residual."""
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes, dropout_add

    batch, length, _ = hidden_states.shape
    query, key, value = self._reshape(self.query_key_value(hidden_states))  # each [B, heads, L, dim]
    slopes = self.beta * _get_alibi_slopes(self.num_heads, hidden_states.device)
    out, _ = attention.tree_attention_forward(self, query, key, value, scaling=self.inv_norm_factor,
                                              alibi_slopes=slopes)
    output = self.dense(out.reshape(batch, length, -1))
    return dropout_add(output, residual, self.hidden_dropout, self.training), None


def _mpt_forward(self, hidden_states: torch.Tensor, position_bias: torch.Tensor | None, cache=None,
                 attention_mask=None, **kwargs):
    """MPT's attention layer on the tree: its fused projection (clipped where configured), ALiBi
    with the slopes of the position bias the model passes (``[heads, 1, S]`` = slope × (key − (S −
    1)), so the entry before the last is minus the slope), its output projection."""
    batch, length = hidden_states.shape[:2]
    mixed = self.Wqkv(hidden_states)
    if self.clip_qkv:
        mixed = mixed.clamp(min=-self.clip_qkv, max=self.clip_qkv)
    query, key, value = (part.reshape(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
                         for part in mixed.chunk(3, dim=2))
    slopes = None if position_bias is None else -position_bias[:, 0, -2].float()
    out, _ = attention.tree_attention_forward(self, query, key, value, scaling=self.softmax_scale,
                                              alibi_slopes=slopes)
    return self.out_proj(out.reshape(batch, length, -1)), None


@dataclass(frozen=True)
class Route:
    """Where a model type's own attention code is replaced: the name of its attention layer's
    class, the method, and what replaces it."""

    layer_class: str
    method: str
    replacement: Callable


ROUTES: dict[str, Route] = {
    "gpt_neo": Route("GPTNeoSelfAttention", "_attn", _gpt_neo_attn),
    "bloom": Route("BloomAttention", "forward", _bloom_forward),
    "mpt": Route("MptAttention", "forward", _mpt_forward),
}


def use_tree_attention(model: torch.nn.Module) -> Callable[[], None]:
    """Make every attention layer of ``model`` run the tree attention: through transformers'
    attention interface, or (for a model type with a route here) by routing its layers' own
    attention code; returns the function that gives the model its own attention back."""
    route = ROUTES.get(model.config.model_type)
    if route is None:
        previous = model.config._attn_implementation
        model.set_attn_implementation(attention.ATTENTION_NAME)
        return lambda: model.set_attn_implementation(previous)
    layers = [m for m in model.modules() if type(m).__name__ == route.layer_class and route.method not in m.__dict__]
    numbered = [layer for layer in layers if getattr(layer, "layer_idx", None) is None]
    for layer in layers:
        setattr(layer, route.method, types.MethodType(route.replacement, layer))
    for layer in numbered:  # GPT-Neo numbers its layers as layer_id
        layer.layer_idx = layer.layer_id

    def restore() -> None:
        for layer in layers:
            layer.__dict__.pop(route.method, None)
        for layer in numbered:
            layer.__dict__.pop("layer_idx", None)
    return restore
