"""Attention over one packed trie (DFS order) plus an optional cached prefix.

Query ``q`` sees key ``k`` of the pack iff ``k <= q < subtree_end[k]`` (k is an ancestor of q or
q itself), and sees every one of the ``n_prefix`` prefix keys (the dataset's shared preface).

Two model features refine that, as transformers applies them:

- a sliding ``window`` (Mistral, Gemma2/3, Qwen2 ...): a key is visible only while
  ``position[q] - position[k] < window``; prefix key ``j`` sits at position ``j``, pack node ``i`` at
  ``positions[i]`` (the preface length plus its depth);
- ``softcap`` on the attention logits (Gemma2): ``score = softcap * tanh(score / softcap)`` after
  scaling, before masking.

- :func:`tree_mask` / :func:`tree_attention_torch`: the plain reference, a dense boolean mask
  through torch SDPA.
- :func:`tree_attention_triton`: a FlashAttention-style Triton forward. Per block of queries it
  walks the prefix blocks, then only the key blocks that hold at least one key visible to that
  query block (listed once per pack by :func:`visible_blocks`), so the work follows the visible
  pairs of the sparse tree rather than N².

Tensors are [1, heads, length, head_dim] as transformers passes them; grouped-query attention
(fewer key/value heads) is supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from invscale.kernels.launch import interpreting, tuned


def tree_mask(subtree_end: torch.Tensor, n_prefix: int = 0, positions: torch.Tensor | None = None,
              window: int | None = None) -> torch.Tensor:
    """Dense boolean ancestor mask [N, n_prefix + N] for a DFS-ordered trie; with ``window``, only
    keys fewer than ``window`` positions back (``positions``: [N] of the pack's nodes)."""
    n = subtree_end.shape[0]
    node = torch.arange(n, device=subtree_end.device)
    visible = (node[None, :] <= node[:, None]) & (node[:, None] < subtree_end[None, :])
    if n_prefix:
        visible = torch.cat([visible.new_ones(n, n_prefix), visible], dim=1)
    if window is not None:
        key_positions = torch.cat([torch.arange(n_prefix, device=subtree_end.device), _required(positions)])
        visible &= positions[:, None] - key_positions[None, :] < window
    return visible


def alibi_bias(slopes: torch.Tensor, positions: torch.Tensor, n_prefix: int = 0) -> torch.Tensor:
    """ALiBi biases [heads, N, n_prefix + N] (fp32): each head's slope times the key's position minus
    the query's, the prefix's keys at positions 0..n_prefix-1 and the pack's at ``positions`` [N]
    (softmax over the keys makes this the same as a bias from the key's position alone)."""
    key_positions = torch.cat([torch.arange(n_prefix, device=positions.device), positions])
    return slopes.float()[:, None, None] * (key_positions[None, :] - positions[:, None]).float()[None]


def _required(positions: torch.Tensor | None) -> torch.Tensor:
    if positions is None:
        raise ValueError("a sliding window needs the positions of the pack's nodes")
    return positions


def softcapped(scores: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """``softcap * tanh(scores / softcap)``, or ``scores`` unchanged when there is no cap."""
    return scores if softcap is None else torch.tanh(scores / softcap) * softcap


def masked_attention(query, key, value, mask: torch.Tensor, scale: float | None = None,
                     softcap: float | None = None) -> torch.Tensor:
    """Attention of ``query`` [B, H, N, d] over ``key``/``value`` [B, kv_heads, S, d] where ``mask``
    ([N, S], or [B, 1, N, S]) is True, or, for a floating-point mask, with the mask added to the
    scores (0 or -inf): torch SDPA, or plain math when the logits are soft-capped."""
    if softcap is None:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale,
                                              enable_gqa=key.shape[1] != query.shape[1])
    batch, heads, n, dim = query.shape
    kv_heads = key.shape[1]
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, n, dim)  # query heads share their KV head
    scores = softcapped(grouped @ key[:, :, None].transpose(-1, -2) * scale, softcap)
    mask = mask[:, :, None] if mask.dim() == 4 else mask  # [B, 1, 1, N, S] against [B, kv_heads, group, N, S]
    scores = scores + mask if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)  # fp32 at least, as transformers' eager
    weights = torch.softmax(scores, dim=-1, dtype=softmax_dtype)
    return (weights.to(value.dtype) @ value[:, :, None]).reshape(batch, heads, n, value.shape[-1])


def tree_attention_torch(query, key, value, subtree_end: torch.Tensor, scale: float | None = None,
                         mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                         window: int | None = None, softcap: float | None = None) -> torch.Tensor:
    """Reference: the dense mask (:func:`tree_mask`) through :func:`masked_attention`. ``key``/``value``
    hold the prefix then the pack; ``mask``, when given, is that mask built in advance."""
    if mask is None:
        mask = tree_mask(subtree_end, key.shape[2] - query.shape[2], positions, window)
    return masked_attention(query, key, value, mask, scale, softcap)


BLOCK_M, BLOCK_N = 64, 64  # queries and keys per block: small blocks skip more of a sparse tree


@dataclass
class BlockLists:
    """For each query block, the key blocks of the pack it must visit (ascending).

    blocks: [n_query_blocks, width] int32, the first ``counts[b]`` entries valid; block sizes as
    given to :func:`visible_blocks`."""

    blocks: torch.Tensor
    counts: torch.Tensor
    block_m: int
    block_n: int


def visible_blocks(subtree_end: torch.Tensor, block_m: int = BLOCK_M, block_n: int = BLOCK_N) -> BlockLists:
    """Exact block sparsity of the ancestor mask: key block c is listed for query block b iff
    some key k of c and query q of b have k <= q < subtree_end[k]."""
    n = subtree_end.shape[0]
    device = subtree_end.device
    n_qb, n_kb = triton.cdiv(n, block_m), triton.cdiv(n, block_n)
    node = torch.arange(n, device=device)
    # key k is seen by the queries k .. subtree_end[k]-1: query blocks first..last
    first, last = node // block_m, (subtree_end - 1) // block_m
    marks = torch.zeros(n_kb, n_qb + 1, dtype=torch.int32, device=device)
    key_block = node // block_n
    ones = torch.ones(n, dtype=torch.int32, device=device)
    marks.index_put_((key_block, first), ones, accumulate=True)
    marks.index_put_((key_block, last + 1), -ones, accumulate=True)
    visible = marks.cumsum(dim=1)[:, :n_qb].T > 0  # [n_qb, n_kb]
    counts = visible.sum(dim=1, dtype=torch.int32)
    order = torch.where(visible, torch.arange(n_kb, device=device), n_kb).sort(dim=1).values
    width = max(int(counts.max()), 1)
    return BlockLists(order[:, :width].to(torch.int32).contiguous(), counts, block_m, block_n)


def _configs():
    return [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (2, 3, 4)]


@triton.jit
def _attend(q, k_base, v_base, slots, key_ok, visible, dims, dim_ok, sk_n, sk_d, sv_n, sv_d,
            running_max, running_sum, acc, scale, softcap, bias, HAS_SOFTCAP: tl.constexpr, HAS_BIAS: tl.constexpr,
            UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """One key block (rows ``slots`` of K and V) folded into the online softmax state (base 2);
    ``bias`` (with ``HAS_BIAS``) is added to the scaled scores (ALiBi)."""
    k = tl.load(k_base + slots[:, None] * sk_n + dims[None, :] * sk_d, mask=key_ok[:, None] & dim_ok[None, :],
                other=0.0)
    v = tl.load(v_base + slots[:, None] * sv_n + dims[None, :] * sv_d, mask=key_ok[:, None] & dim_ok[None, :],
                other=0.0)
    if UPCAST:
        k, v = k.to(tl.float32), v.to(tl.float32)
    if IEEE:
        scores = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        scores = tl.dot(q, tl.trans(k))
    scores = scores * scale
    if HAS_BIAS:
        scores = scores + bias
    if HAS_SOFTCAP:  # softcap * tanh(scores / softcap), tanh(x) = 1 - 2 / (exp(2x) + 1)
        scores = softcap * (1.0 - 2.0 / (tl.exp(2.0 * scores / softcap) + 1.0))
    scores = tl.where(visible, scores * 1.4426950408889634, float("-inf"))  # log2(e)
    new_max = tl.maximum(running_max, tl.max(scores, axis=1))
    shift = tl.where(new_max == float("-inf"), 0.0, new_max)  # rows that have seen no key yet
    weights = tl.exp2(scores - shift[:, None])
    correction = tl.exp2(running_max - shift)
    running_sum = running_sum * correction + tl.sum(weights, axis=1)
    if IEEE:
        acc = acc * correction[:, None] + tl.dot(weights, v, input_precision="ieee")
    else:
        acc = acc * correction[:, None] + tl.dot(weights.to(v.dtype), v)
    return new_max, running_sum, acc


@tuned(_configs(), key=["HEAD_DIM", "N_BUCKET"], fixed={})
@triton.jit
def _tree_attention_kernel(q_ptr, k_ptr, v_ptr, o_ptr, end_ptr, pos_ptr, blocks_ptr, counts_ptr, slopes_ptr,
                           N, P, N_BUCKET, scale, window, softcap, heads_per_kv, blocks_width,
                           sq_h, sq_n, sq_d, sk_h, sk_n, sk_d, sv_h, sv_n, sv_d, so_h, so_n, so_d,
                           HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                           HAS_ALIBI: tl.constexpr, USES_POSITIONS: tl.constexpr, UPCAST: tl.constexpr,
                           IEEE: tl.constexpr):
    """Program (query block, head): online softmax over the prefix, then the listed key blocks;
    with ``HAS_ALIBI``, each score biased by the head's slope times the key's position minus the
    query's."""
    q_block, head = tl.program_id(0), tl.program_id(1)
    kv_head = head // heads_per_kv
    rows = q_block * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    row_ok, dim_ok = rows < N, dims < HEAD_DIM
    q = tl.load(q_ptr + head * sq_h + rows[:, None] * sq_n + dims[None, :] * sq_d,
                mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    running_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    k_base, v_base = k_ptr + kv_head * sk_h, v_ptr + kv_head * sv_h
    n_listed = tl.load(counts_ptr + q_block)
    first_prefix = 0
    if USES_POSITIONS:
        row_positions = tl.load(pos_ptr + rows, mask=row_ok, other=0)
    if HAS_ALIBI:
        slope = tl.load(slopes_ptr + head).to(tl.float32)
    if HAS_WINDOW:  # prefix keys before every row's window are skipped a block at a time
        lowest = tl.min(tl.where(row_ok, row_positions, P + N), axis=0)
        first_prefix = tl.maximum(lowest - window + 1, 0) // BLOCK_N * BLOCK_N
    # two straight loops (no branch inside), so the compiler can pipeline each one's loads
    for start in range(first_prefix, P, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_ok = keys < P
        visible = key_ok[None, :] & row_ok[:, None]
        if HAS_WINDOW:
            visible = visible & (row_positions[:, None] - keys[None, :] < window)
        if HAS_ALIBI:
            prefix_bias = slope * (keys[None, :] - row_positions[:, None]).to(tl.float32)
        else:
            prefix_bias = 0.0
        running_max, running_sum, acc = _attend(
            q, k_base, v_base, keys, key_ok, visible, dims, dim_ok, sk_n, sk_d, sv_n, sv_d,
            running_max, running_sum, acc, scale, softcap, prefix_bias, HAS_SOFTCAP, HAS_ALIBI, UPCAST, IEEE)
    for listed in range(0, n_listed):
        block = tl.load(blocks_ptr + q_block * blocks_width + listed)
        keys = block * BLOCK_N + tl.arange(0, BLOCK_N)
        key_ok = keys < N
        ends = tl.load(end_ptr + keys, mask=key_ok, other=0)
        visible = (keys[None, :] <= rows[:, None]) & (rows[:, None] < ends[None, :])
        if USES_POSITIONS:
            key_positions = tl.load(pos_ptr + keys, mask=key_ok, other=0)
        if HAS_WINDOW:
            visible = visible & (row_positions[:, None] - key_positions[None, :] < window)
        if HAS_ALIBI:
            node_bias = slope * (key_positions[None, :] - row_positions[:, None]).to(tl.float32)
        else:
            node_bias = 0.0
        running_max, running_sum, acc = _attend(
            q, k_base, v_base, P + keys, key_ok, visible, dims, dim_ok, sk_n, sk_d, sv_n, sv_d,
            running_max, running_sum, acc, scale, softcap, node_bias, HAS_SOFTCAP, HAS_ALIBI, UPCAST, IEEE)
    out = acc / tl.where(row_ok, running_sum, 1.0)[:, None]
    tl.store(o_ptr + head * so_h + rows[:, None] * so_n + dims[None, :] * so_d, out.to(o_ptr.dtype.element_ty),
             mask=row_ok[:, None] & dim_ok[None, :])


def tree_attention_triton(query, key, value, subtree_end: torch.Tensor, scale: float | None = None,
                          lists: BlockLists | None = None, positions: torch.Tensor | None = None,
                          window: int | None = None, softcap: float | None = None,
                          slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Tree attention through the Triton kernel; same contract as :func:`tree_attention_torch`.
    ``lists`` (from :func:`visible_blocks`) can be built once per pack and shared by all layers;
    ``slopes`` [heads]: ALiBi (see :func:`alibi_bias`)."""
    _, heads, n, head_dim = query.shape
    kv_heads, n_prefix = key.shape[1], key.shape[2] - n
    if lists is None:
        lists = visible_blocks(subtree_end)
    uses_positions = window is not None or slopes is not None
    if uses_positions:
        positions = _required(positions)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    out = torch.empty(1, n, heads, head_dim, dtype=query.dtype, device=query.device).transpose(1, 2)
    grid = (triton.cdiv(n, lists.block_m), heads)
    _tree_attention_kernel[grid](
        query, key, value, out, subtree_end, positions if uses_positions else subtree_end,
        lists.blocks, lists.counts, slopes.float().contiguous() if slopes is not None else subtree_end, n, n_prefix, triton.next_power_of_2(n), scale, window or 0, softcap or 1.0,
        heads // kv_heads, lists.blocks.shape[1],
        query.stride(1), query.stride(2), query.stride(3), key.stride(1), key.stride(2), key.stride(3),
        value.stride(1), value.stride(2), value.stride(3), out.stride(1), out.stride(2), out.stride(3),
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_M=lists.block_m,
        BLOCK_N=lists.block_n, HAS_WINDOW=window is not None, HAS_SOFTCAP=softcap is not None,
        HAS_ALIBI=slopes is not None, USES_POSITIONS=uses_positions,
        UPCAST=interpreting(), IEEE=query.dtype == torch.float32,
    )
    return out
