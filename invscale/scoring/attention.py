"""Tree attention plugged into transformers' attention interface.

The HF model runs unchanged; its attention layers call :func:`tree_attention_forward`, which
reads the pack's structure from the :class:`TreeContext` made active around the forward pass with
:func:`active` (a context variable, so it reaches layers that do not pass extra keyword arguments
through). Two modes:

- capture (``TreeContext.captured`` is a dict): causal attention over the preface (a chain, after
  any cached prefix, as when a segment is pushed on the stack of shared prefixes), and each
  layer's keys and values (the prefix's and the chain's) are stored so later packs can reuse them;
- pack: queries attend to all cached preface keys, then to trie nodes by the ancestor rule
  ``k <= q < subtree_end[k]``.

Each layer passes its own sliding window and attention-logit soft cap (transformers' keyword
arguments ``sliding_window`` and ``softcap``); every backend applies both. Any other argument that
would change the result is refused with one line instead of being ignored.

Backends here: ``sdpa`` (dense boolean mask, any device; the reference), ``segments`` (the pack
cut into DFS segments that see only the preface, the path to their first node and themselves:
:mod:`invscale.kernels.segment_attention`, the CPU default), ``flex`` (flex_attention with a
block-sparse mask, compiled on CUDA) and ``triton`` (the block-sparse kernel of
:mod:`invscale.kernels.tree_attention`). Others plug in through
:func:`register_backend` and receive the same :class:`TreeContext`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from invscale.kernels.segment_attention import prefix_apart, segment_attention, segment_plan
from invscale.kernels.tree_attention import (alibi_bias, masked_attention, tree_attention_triton, tree_mask,
                                             visible_blocks)

ATTENTION_NAME = "invscale_tree"


@dataclass
class TreeContext:
    """What one forward pass needs to know about the tree it runs.

    subtree_end: [N] int64 on the model's device (for the preface pass: a chain, every entry N).
    positions: [N] int64, each node's position id (preface length + depth), for sliding windows.
    prefix: per layer index, the cached preface (key, value), each [1, kv_heads, P, head_dim].
    captured: when a dict, layers store their (key, value) in it (preface pass).
    backend: name of the attention backend to use for pack passes.
    layers: the indexes of the layers that ran the tree attention in this pass (a layer computing
    attention in its own code never shows here).
    """

    subtree_end: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    backend: str = "sdpa"
    layers: set[int] = field(default_factory=set)
    _masks: dict = field(default_factory=dict)

    @classmethod
    def preface(cls, length: int, device: torch.device, prefix: dict | None = None, start: int = 0) -> "TreeContext":
        """The context of a preface pass: a chain of ``length`` tokens whose keys and values are kept
        (after ``prefix``, the ``start`` tokens already cached, which the chain attends to and
        which the kept keys and values begin with)."""
        return cls(subtree_end=torch.full((length,), length, dtype=torch.long, device=device),
                   positions=torch.arange(start, start + length, device=device),
                   prefix={} if prefix is None else prefix, captured={})

    def mask(self, kind: str, n_prefix: int, window: int | None, build: Callable):
        """The mask of ``kind`` for this pack, built once by ``build(context, n_prefix, window)`` and
        reused by every layer with the same window."""
        if (kind, n_prefix, window) not in self._masks:
            self._masks[kind, n_prefix, window] = build(self, n_prefix, window)
        return self._masks[kind, n_prefix, window]

    def mask_bytes(self) -> int:
        """Bytes of the tensors kept for this pack's masks."""
        total = 0
        for mask in self._masks.values():  # a tensor, or an object holding tensors (BlockMask, BlockLists)
            parts = (mask,) if isinstance(mask, torch.Tensor) else vars(mask).values()
            total += sum(part.nbytes for part in parts if isinstance(part, torch.Tensor))
        return total


_ACTIVE: contextvars.ContextVar["TreeContext | None"] = contextvars.ContextVar("invscale_tree", default=None)


@contextlib.contextmanager
def active(context: TreeContext):
    """Make ``context`` the tree every attention layer runs while the block is executing."""
    token = _ACTIVE.set(context)
    try:
        yield context
    finally:
        _ACTIVE.reset(token)


def _dense_mask(context: TreeContext, n_prefix: int, window: int | None) -> torch.Tensor:
    return tree_mask(context.subtree_end, n_prefix, context.positions, window)


def sdpa_tree_attention(query, key, value, context: TreeContext, scaling: float | None, window: int | None = None,
                        softcap: float | None = None, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Reference backend: the dense ancestor mask through torch SDPA (plain math when the logits are
    soft-capped); ``slopes`` [heads]: ALiBi biases from the positions. Shapes [1, heads, len, dim]."""
    n_prefix = key.shape[2] - query.shape[2]
    mask = context.mask("dense", n_prefix, window, _dense_mask)
    if slopes is not None:
        bias = alibi_bias(slopes, context.positions, n_prefix)
        mask = bias.masked_fill(~mask, float("-inf")).to(query.dtype)[None]
    return masked_attention(query, key, value, mask, scaling, softcap)


def segments_tree_attention(query, key, value, context: TreeContext, scaling: float | None,
                            window: int | None = None, softcap: float | None = None,
                            slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Segments backend: attention over each DFS segment's preface, path and own nodes, batched;
    ``slopes``: ALiBi. Shapes [1, heads, len, dim]."""
    alibi = slopes is not None
    if prefix_apart(query, key, value, window, softcap, slopes):
        kind, groups = "segments-prefix-apart", query.shape[1] // key.shape[1]
    else:
        kind, groups = "segments-alibi" if alibi else "segments", None
    plan = context.mask(kind, key.shape[2] - query.shape[2], window,
                        lambda c, n_prefix, w: segment_plan(c.subtree_end, c.positions, n_prefix, w,
                                                            dtype=query.dtype, offsets=alibi, groups=groups))
    return segment_attention(query, key, value, plan, scaling, softcap, slopes)


def triton_tree_attention(query, key, value, context: TreeContext, scaling: float | None, window: int | None = None,
                          softcap: float | None = None, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Triton backend: the block-sparse tree attention kernel. Shapes [1, heads, len, dim]; values
    narrower than queries and keys (latent attention) are zero-padded to their width."""
    lists = context.mask("blocks", 0, None, lambda c, *_: visible_blocks(c.subtree_end))
    value_dim = value.shape[-1]
    if value_dim != query.shape[-1]:
        value = F.pad(value, (0, query.shape[-1] - value_dim))
    out = tree_attention_triton(query, key, value, context.subtree_end, scaling, lists=lists,
                                positions=context.positions, window=window, softcap=softcap, slopes=slopes)
    return out[..., :value_dim]


def tree_block_mask(subtree_end: torch.Tensor, n_prefix: int = 0, positions: torch.Tensor | None = None,
                    window: int | None = None):
    """flex_attention BlockMask of the same visibility as :func:`tree_mask`; fully masked blocks
    (most of a sparse tree) are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    n = subtree_end.shape[0]

    def visible(batch, head, q, kv):
        node = kv - n_prefix
        return (kv < n_prefix) | ((node <= q) & (q < subtree_end[node.clamp(min=0)]))

    def visible_in_window(batch, head, q, kv):
        node = (kv - n_prefix).clamp(min=0)
        key_position = torch.where(kv < n_prefix, kv, positions[node])
        return visible(batch, head, q, kv) & (positions[q] - key_position < window)

    return create_block_mask(visible if window is None else visible_in_window, B=None, H=None, Q_LEN=n,
                             KV_LEN=n_prefix + n, device=subtree_end.device)


@functools.cache
def _flex_attention(compiled: bool):
    from torch.nn.attention.flex_attention import flex_attention

    if compiled:
        return torch.compile(flex_attention)  # pack lengths vary: dynamo marks them dynamic after one recompile
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    return flex_attention


def flex_tree_attention(query, key, value, context: TreeContext, scaling: float | None, window: int | None = None,
                        softcap: float | None = None, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """flex_attention backend (compiled on CUDA, eager elsewhere). Shapes [1, heads, len, dim].

    The compiled kernel needs head_dim >= 16; smaller heads (toy models) take the SDPA path."""
    if query.is_cuda and query.shape[-1] < 16:
        return sdpa_tree_attention(query, key, value, context, scaling, window, softcap, slopes)
    n_prefix = key.shape[2] - query.shape[2]
    block_mask = context.mask("block", n_prefix, window,
                              lambda c, n_prefix, w: tree_block_mask(c.subtree_end, n_prefix, c.positions, w))
    score_mod = None
    if softcap is not None and slopes is not None:
        raise ValueError("ALiBi with soft-capped attention logits is not computed here")
    if softcap is not None:
        def score_mod(score, batch, head, q, kv):
            return torch.tanh(score / softcap) * softcap
    if slopes is not None:
        positions, key_slopes = context.positions, slopes.float()

        def score_mod(score, batch, head, q, kv):
            node = (kv - n_prefix).clamp(min=0)
            key_position = torch.where(kv < n_prefix, kv, positions[node])
            return score + key_slopes[head] * (key_position - positions[q]).to(torch.float32)
    attend = _flex_attention(query.is_cuda)
    return attend(query, key, value, score_mod=score_mod, block_mask=block_mask, scale=scaling,
                  enable_gqa=key.shape[1] != query.shape[1])


_BACKENDS: dict[str, Callable] = {"sdpa": sdpa_tree_attention, "segments": segments_tree_attention,
                                  "flex": flex_tree_attention, "triton": triton_tree_attention}


def register_backend(name: str, function: Callable) -> None:
    """Make ``function(query, key, value, context, scaling, window, softcap) -> out`` selectable as a
    pack backend (``window`` and ``softcap`` are None where the layer has none; a layer with ALiBi
    biases also passes ``slopes=`` [heads])."""
    _BACKENDS[name] = function


def backends() -> list[str]:
    """Names of the registered pack attention backends."""
    return sorted(_BACKENDS)


def resolve_backend(name: str, device: torch.device, kernels: str = "torch") -> str:
    """``auto`` means the Triton kernel when ``kernels`` is ``triton``, else flex on CUDA and
    segments elsewhere; an unknown name raises ValueError."""
    if name == "auto":
        if kernels == "triton":
            return "triton"
        return "flex" if device.type == "cuda" else "segments"
    if name not in _BACKENDS:
        raise ValueError(f"--attention {name}: unknown tree attention backend; choose auto, {', '.join(backends())}")
    return name


def attention_memory(backend: str, device: torch.device, n_queries: int, n_keys: int, heads: int) -> tuple[int, int]:
    """Upper bounds, in bytes, on what one pack's attention with ``backend`` takes beyond its
    inputs: (the mask the pack's context keeps for every layer, the scores one call may
    materialise). The dense boolean mask of ``sdpa`` is kept; fp32 scores are assumed wherever
    the kernel is not block-sparse (sdpa may fall back to its math path, eager flex_attention off
    CUDA computes them all, segments stay below the dense size; unknown backends are assumed to do
    both)."""
    sparse = backend == "triton" or (backend == "flex" and device.type == "cuda")
    kept_mask = 0 if sparse else n_queries * n_keys
    scores = 0 if sparse else n_queries * n_keys * heads * 4
    return kept_mask, scores


# Keyword arguments transformers' attention layers pass that change nothing in a forward pass
# without padding or dropout (the tree attention takes its positions from the context).
_INERT_ARGUMENTS = {"position_ids", "cache_position", "output_attentions", "use_cache", "past_key_values",
                    "position_embeddings"}


class UnsupportedAttention(RuntimeError):
    """An attention layer asked for something the tree attention does not compute."""


def _check_arguments(module, dropout: float, kwargs: dict) -> None:
    """Refuse attention arguments that would change the result and that the tree does not handle."""
    name = type(module).__name__
    if dropout:
        raise UnsupportedAttention(f"{name}: attention dropout {dropout} during scoring (the model is not in eval mode)")
    if kwargs.get("is_causal", True) is False:
        raise UnsupportedAttention(f"{name}: bidirectional (non-causal) attention")
    unknown = sorted(k for k, v in kwargs.items() if v is not None and k not in _INERT_ARGUMENTS | {"is_causal"})
    if unknown:
        raise UnsupportedAttention(f"{name}: attention argument {', '.join(unknown)} is not handled by the tree attention")


def tree_attention_forward(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                           sliding_window: int | None = None, softcap: float | None = None,
                           alibi_slopes: torch.Tensor | None = None, **kwargs):
    """Attention function with transformers' interface: returns ([B, L, heads, dim], None).

    ``sliding_window`` and ``softcap`` are the layer's own (transformers passes them per layer);
    ``alibi_slopes`` [heads], from a layer routed by :mod:`invscale.scoring.own_attention`, biases
    each score by the head's slope times the key's position minus the query's."""
    context = _ACTIVE.get()
    if context is None:
        raise RuntimeError(f"the '{ATTENTION_NAME}' attention runs only inside invscale.scoring's passes")
    _check_arguments(module, dropout, kwargs)
    layer = module.layer_idx
    context.layers.add(layer)
    if layer in context.prefix:
        prefix_key, prefix_value = context.prefix[layer]
        key, value = torch.cat([prefix_key, key], dim=2), torch.cat([prefix_value, value], dim=2)
    alibi = {} if alibi_slopes is None else {"slopes": alibi_slopes}
    if context.captured is not None:
        context.captured[layer] = (key, value)
        out = sdpa_tree_attention(query, key, value, context, scaling, sliding_window, softcap, **alibi)
    else:
        out = _BACKENDS[context.backend](query, key, value, context, scaling, sliding_window, softcap, **alibi)
    return out.transpose(1, 2).contiguous(), None


def _no_prepared_mask(*args, **kwargs):
    """The tree attention builds its own mask; the model's mask factory has nothing to do."""
    return None


def register() -> None:
    """Register the attention function and its (empty) mask factory with transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, tree_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, _no_prepared_mask)
