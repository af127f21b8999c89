"""Tree attention plugged into transformers' attention interface.

The HF model runs unchanged; its attention layers call :func:`tree_attention_forward`, which
reads the pack's structure from the ``invscale_tree`` keyword argument that the model passes
through to every attention call. Two modes:

- capture (``TreeContext.captured`` is a dict): plain causal attention over the preface, and each
  layer's keys and values are stored so every later pack can reuse them;
- pack: queries attend to all cached preface keys, then to trie nodes by the ancestor rule
  ``k <= q < subtree_end[k]``.

Backends here: ``sdpa`` (dense boolean mask, any device; the reference), ``flex``
(flex_attention with a block-sparse mask, compiled on CUDA) and ``triton`` (the block-sparse
kernel of :mod:`invscale.kernels.tree_attention`). Others plug in through
:func:`register_backend` and receive the same :class:`TreeContext`.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from invscale.kernels.tree_attention import tree_attention_torch, tree_attention_triton, tree_mask, visible_blocks

ATTENTION_NAME = "invscale_tree"


@dataclass
class TreeContext:
    """What one forward pass needs to know about the tree it runs.

    subtree_end: [N] int64 on the model's device, or None for a plain causal pass.
    prefix: per layer index, the cached preface (key, value), each [1, kv_heads, P, head_dim].
    captured: when a dict, layers store their (key, value) in it (preface pass).
    backend: name of the attention backend to use for pack passes.
    """

    subtree_end: torch.Tensor | None = None
    prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    backend: str = "sdpa"
    _masks: dict = field(default_factory=dict)

    def mask(self, kind: str, n_prefix: int, build: Callable):
        """The mask of ``kind`` for this pack, built once by ``build(subtree_end, n_prefix)`` and
        reused by every layer."""
        if (kind, n_prefix) not in self._masks:
            self._masks[kind, n_prefix] = build(self.subtree_end, n_prefix)
        return self._masks[kind, n_prefix]

    def mask_bytes(self) -> int:
        """Bytes of the tensors kept for this pack's masks."""
        total = 0
        for mask in self._masks.values():  # a tensor, or an object holding tensors (BlockMask, BlockLists)
            parts = (mask,) if isinstance(mask, torch.Tensor) else vars(mask).values()
            total += sum(part.nbytes for part in parts if isinstance(part, torch.Tensor))
        return total


def sdpa_tree_attention(query, key, value, context: TreeContext, scaling: float | None) -> torch.Tensor:
    """Reference backend: torch SDPA with the dense ancestor mask. Shapes [1, heads, len, dim]."""
    mask = context.mask("dense", key.shape[2] - query.shape[2], tree_mask)
    return tree_attention_torch(query, key, value, context.subtree_end, scaling, mask=mask)


def triton_tree_attention(query, key, value, context: TreeContext, scaling: float | None) -> torch.Tensor:
    """Triton backend: the block-sparse tree attention kernel. Shapes [1, heads, len, dim]."""
    lists = context.mask("blocks", 0, lambda subtree_end, _: visible_blocks(subtree_end))
    return tree_attention_triton(query, key, value, context.subtree_end, scaling, lists=lists)


def tree_block_mask(subtree_end: torch.Tensor, n_prefix: int = 0):
    """flex_attention BlockMask of the same visibility as :func:`tree_mask`; fully masked blocks
    (most of a sparse tree) are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    n = subtree_end.shape[0]

    def visible(batch, head, q, kv):
        node = kv - n_prefix
        return (kv < n_prefix) | ((node <= q) & (q < subtree_end[node.clamp(min=0)]))

    return create_block_mask(visible, B=None, H=None, Q_LEN=n, KV_LEN=n_prefix + n, device=subtree_end.device)


@functools.cache
def _flex_attention(compiled: bool):
    from torch.nn.attention.flex_attention import flex_attention

    if compiled:
        return torch.compile(flex_attention)  # pack lengths vary: dynamo marks them dynamic after one recompile
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    return flex_attention


def flex_tree_attention(query, key, value, context: TreeContext, scaling: float | None) -> torch.Tensor:
    """flex_attention backend (compiled on CUDA, eager elsewhere). Shapes [1, heads, len, dim].

    The compiled kernel needs head_dim >= 16; smaller heads (toy models) take the SDPA path."""
    if query.is_cuda and query.shape[-1] < 16:
        return sdpa_tree_attention(query, key, value, context, scaling)
    block_mask = context.mask("block", key.shape[2] - query.shape[2], tree_block_mask)
    attend = _flex_attention(query.is_cuda)
    return attend(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1])


_BACKENDS: dict[str, Callable] = {"sdpa": sdpa_tree_attention, "flex": flex_tree_attention,
                                  "triton": triton_tree_attention}


def register_backend(name: str, function: Callable) -> None:
    """Make ``function(query, key, value, context, scaling) -> out`` selectable as a pack backend."""
    _BACKENDS[name] = function


def backends() -> list[str]:
    """Names of the registered pack attention backends."""
    return sorted(_BACKENDS)


def resolve_backend(name: str, device: torch.device, kernels: str = "torch") -> str:
    """``auto`` means the Triton kernel when ``kernels`` is ``triton``, else flex on CUDA and sdpa
    elsewhere; an unknown name raises ValueError."""
    if name == "auto":
        if kernels == "triton":
            return "triton"
        return "flex" if device.type == "cuda" else "sdpa"
    if name not in _BACKENDS:
        raise ValueError(f"--attention {name}: unknown tree attention backend; choose auto, {', '.join(backends())}")
    return name


def attention_memory(backend: str, device: torch.device, n_queries: int, n_keys: int, heads: int) -> tuple[int, int]:
    """Upper bounds, in bytes, on what one pack's attention with ``backend`` takes beyond its
    inputs: (the mask the pack's context keeps for every layer, the scores one call may
    materialise). The dense boolean mask of ``sdpa`` is kept; fp32 scores are assumed wherever
    the kernel is not block-sparse (sdpa may fall back to its math path, eager flex_attention off
    CUDA computes them all; unknown backends are assumed to do both)."""
    sparse = backend == "triton" or (backend == "flex" and device.type == "cuda")
    kept_mask = 0 if sparse else n_queries * n_keys
    scores = 0 if sparse else n_queries * n_keys * heads * 4
    return kept_mask, scores


def tree_attention_forward(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                           invscale_tree: TreeContext | None = None, **kwargs):
    """Attention function with transformers' interface: returns ([B, L, heads, dim], None)."""
    if invscale_tree is None:
        raise RuntimeError(f"the '{ATTENTION_NAME}' attention needs the invscale_tree argument; "
                           "run the model through invscale.scoring")
    context, layer = invscale_tree, module.layer_idx
    if context.captured is not None:
        context.captured[layer] = (key, value)
        out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling,
                                             enable_gqa=key.shape[1] != query.shape[1])
    else:
        if layer in context.prefix:
            prefix_key, prefix_value = context.prefix[layer]
            key, value = torch.cat([prefix_key, key], dim=2), torch.cat([prefix_value, value], dim=2)
        out = _BACKENDS[context.backend](query, key, value, context, scaling)
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
