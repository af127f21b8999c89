"""Tree attention at the cost of the visible pairs, in plain torch: the CPU path.

In depth-first order a trie's nodes come in contiguous segments, and every ancestor of a node of
segment ``[a, a + C)`` is either inside the segment or an ancestor of its first node ``a`` (a node
``k < a`` whose subtree reaches into the segment contains ``a``). So a segment's queries need only
the prefix (the cached preface), the path to ``a`` (``depth[a]`` nodes) and the segment itself:
``P + depth + C`` keys per query instead of the ``P + N`` of the dense mask. All segments of a
pack run as one batch ([segments, heads, C, keys]) through :func:`masked_attention`, with the
keys and values of each gathered once per layer and the mask built once per pack.

The reference is :func:`invscale.kernels.tree_attention.tree_attention_torch` (the dense mask),
which the tests compare this with, windows and soft caps included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invscale.kernels.tree_attention import masked_attention

SEGMENT = 64  # queries per segment: the path to each segment's first node is paid once per segment
PATH_STEP = 32  # segments are batched with others whose paths are as long, rounded up to this


@dataclass
class SegmentBatch:
    """Segments whose paths have about the same length, run as one batch.

    segments: [B] which segments; keys: [B, P + K] indices into the prefix-then-pack keys (the
    prefix, the path to the segment's first node, then its own nodes; padding repeats key 0 and is
    masked); mask: [B, 1, C, P + K], 0 where visible and -inf elsewhere, in the queries' dtype (an
    additive mask, so attention need not convert it for every layer)."""

    segments: torch.Tensor
    keys: torch.Tensor
    mask: torch.Tensor
    offsets: torch.Tensor | None = None  # [B, C, P + K] key position minus query position (for ALiBi)


@dataclass
class SegmentPlan:
    """A pack's segments, batched by path length (built once per pack, used by every layer).
    n: the pack's node count (queries are padded from n to a whole number of segments)."""

    batches: list[SegmentBatch]
    n: int
    n_segments: int
    segment: int


def segment_plan(subtree_end: torch.Tensor, positions: torch.Tensor | None = None, n_prefix: int = 0,
                 window: int | None = None, segment: int = SEGMENT, dtype: torch.dtype = torch.float32,
                 offsets: bool = False) -> SegmentPlan:
    """The segments of a DFS-ordered trie of ``len(subtree_end)`` nodes; with ``window``, keys
    ``window`` or more positions behind a query are hidden (``positions``: [N] of the nodes).
    ``dtype``: the queries' dtype, which the masks take. ``offsets``: keep each key's position
    minus its query's, for ALiBi biases."""
    if (window is not None or offsets) and positions is None:
        raise ValueError("a sliding window or ALiBi needs the positions of the pack's nodes")
    device = subtree_end.device
    n = subtree_end.shape[0]
    n_segments = max(1, -(-n // segment))
    starts = torch.arange(n_segments, device=device) * segment
    node = torch.arange(n, device=device)
    # the path to each segment's first node: nodes before it whose subtree reaches it
    on_path = (node[None, :] < starts[:, None]) & (subtree_end[None, :] > starts[:, None])  # [S, N]
    path_length = on_path.sum(dim=1)
    # ascending node order for each path, padded with N (sorted last)
    paths = torch.where(on_path, node[None, :], n).sort(dim=1).values
    rounded = (path_length + PATH_STEP - 1) // PATH_STEP * PATH_STEP
    batches = []
    for width in rounded.unique().tolist():
        chosen = (rounded == width).nonzero().flatten()
        batches.append(_batch(chosen, paths[chosen, :width], starts[chosen], subtree_end, positions, n_prefix,
                              window, segment, dtype, offsets))
    return SegmentPlan(batches, n, n_segments, segment)


def _batch(segments, path, starts, subtree_end, positions, n_prefix, window, segment, dtype,
           offsets: bool = False) -> SegmentBatch:
    device, n = subtree_end.device, subtree_end.shape[0]
    own = starts[:, None] + torch.arange(segment, device=device)[None, :]  # [B, C]
    keys = torch.cat([path, own], dim=1)  # [B, width + C]
    key_ok = keys < n
    keys = torch.where(key_ok, keys, 0)
    ends = subtree_end[keys]
    visible = key_ok[:, None, :] & (keys[:, None, :] <= own[:, :, None]) & (own[:, :, None] < ends[:, None, :])
    prefix_visible = visible.new_ones(len(segments), segment, n_prefix)
    if window is not None:
        query_positions = positions[own.clamp(max=n - 1)]  # [B, C]
        visible &= query_positions[:, :, None] - positions[keys][:, None, :] < window
        prefix = torch.arange(n_prefix, device=device)
        prefix_visible = query_positions[:, :, None] - prefix[None, None, :] < window
    visible |= (own >= n)[:, :, None] & key_ok[:, None, :]  # padding queries: any key, results dropped
    prefix_keys = torch.arange(n_prefix, device=device).expand(len(segments), -1)
    visible = torch.cat([prefix_visible, visible], dim=2)
    mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))
    all_keys = torch.cat([prefix_keys, keys + n_prefix], dim=1)
    relative = None
    if offsets:
        key_positions = torch.cat([torch.arange(n_prefix, device=device), positions])[all_keys]  # [B, P + K]
        query_positions = positions[own.clamp(max=n - 1)]
        relative = (key_positions[:, None, :] - query_positions[:, :, None]).to(torch.float32)
    return SegmentBatch(segments, all_keys, mask[:, None], relative)


def segment_attention(query, key, value, plan: SegmentPlan, scale: float | None = None,
                      softcap: float | None = None, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Tree attention by segments: same contract and result as the dense reference.

    query: [1, heads, N, d]; key, value: [1, kv_heads, P + N, d] (prefix first); ``slopes`` [heads]:
    ALiBi, each score biased by its head's slope times the key's position minus the query's (the
    plan built with ``offsets``). Returns [1, heads, N, d_value]."""
    _, heads, n, dim = query.shape
    kv_heads, value_dim = key.shape[1], value.shape[-1]
    padded = plan.n_segments * plan.segment
    queries = torch.nn.functional.pad(query[0], (0, 0, 0, padded - n))  # [H, S*C, d]
    queries = queries.view(heads, plan.n_segments, plan.segment, dim).transpose(0, 1)  # [S, H, C, d]
    out = query.new_empty(plan.n_segments, heads, plan.segment, value_dim)
    for batch in plan.batches:
        count, width = batch.keys.shape
        flat_keys = batch.keys.reshape(-1)
        keys = key[0][:, flat_keys].view(kv_heads, count, width, dim).transpose(0, 1)  # [B, Hkv, P + K, d]
        values = value[0][:, flat_keys].view(kv_heads, count, width, value_dim).transpose(0, 1)
        mask = batch.mask
        if slopes is not None:
            mask = (mask + slopes[None, :, None, None] * batch.offsets[:, None]).to(query.dtype)
        out[batch.segments] = masked_attention(queries[batch.segments], keys, values, mask, scale, softcap)
    return out.transpose(0, 1).reshape(heads, padded, value_dim)[None, :, :n]
