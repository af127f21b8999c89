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


@dataclass
class SegmentPlan:
    """Where each segment's queries and keys sit, and which pairs are visible (built once per pack).

    keys: [S, K] indices into the pack's nodes of each segment's keys (the path to its first node,
    then its own nodes; padding repeats node 0 and is masked). visible: [S, C, P + K] bool, the
    prefix's P keys first. n: the pack's node count (queries are padded from n to S * C)."""

    keys: torch.Tensor
    visible: torch.Tensor
    n: int
    segment: int


def segment_plan(subtree_end: torch.Tensor, positions: torch.Tensor | None = None, n_prefix: int = 0,
                 window: int | None = None, segment: int = SEGMENT) -> SegmentPlan:
    """The segments of a DFS-ordered trie of ``len(subtree_end)`` nodes; with ``window``, keys
    ``window`` or more positions behind a query are hidden (``positions``: [N] of the nodes)."""
    device = subtree_end.device
    n = subtree_end.shape[0]
    n_segments = max(1, -(-n // segment))
    starts = torch.arange(n_segments, device=device) * segment
    node = torch.arange(n, device=device)
    # the path to each segment's first node: nodes before it whose subtree reaches it
    on_path = (node[None, :] < starts[:, None]) & (subtree_end[None, :] > starts[:, None])  # [S, N]
    path_length = on_path.sum(dim=1)
    width = int(path_length.max()) if n else 0
    # ascending node order for each path, padded with N (sorted last), then the segment's own nodes
    path = torch.where(on_path, node[None, :], n).sort(dim=1).values[:, :width]
    own = starts[:, None] + torch.arange(segment, device=device)[None, :]  # [S, C]
    keys = torch.cat([path, own], dim=1)  # [S, width + C]
    key_ok = keys < n
    keys = torch.where(key_ok, keys, 0)
    ends = subtree_end[keys]
    visible = key_ok[:, None, :] & (keys[:, None, :] <= own[:, :, None]) & (own[:, :, None] < ends[:, None, :])
    prefix_visible = visible.new_ones(n_segments, segment, n_prefix)
    if window is not None:
        if positions is None:
            raise ValueError("a sliding window needs the positions of the pack's nodes")
        query_positions = positions[own.clamp(max=n - 1)]  # [S, C]
        visible &= query_positions[:, :, None] - positions[keys][:, None, :] < window
        prefix = torch.arange(n_prefix, device=device)
        prefix_visible = query_positions[:, :, None] - prefix[None, None, :] < window
    visible |= (own >= n)[:, :, None] & key_ok[:, None, :]  # padding queries: any key, results dropped
    return SegmentPlan(keys, torch.cat([prefix_visible, visible], dim=2), n, segment)


def segment_attention(query, key, value, plan: SegmentPlan, scale: float | None = None,
                      softcap: float | None = None) -> torch.Tensor:
    """Tree attention by segments: same contract and result as the dense reference.

    query: [1, heads, N, d]; key, value: [1, kv_heads, P + N, d] (prefix first). Returns
    [1, heads, N, d_value]."""
    _, heads, n, dim = query.shape
    kv_heads, n_prefix = key.shape[1], key.shape[2] - n
    n_segments, width = plan.keys.shape
    padded = n_segments * plan.segment
    queries = torch.nn.functional.pad(query[0], (0, 0, 0, padded - n))  # [H, S*C, d]
    queries = queries.view(heads, n_segments, plan.segment, dim).transpose(0, 1)  # [S, H, C, d]
    flat_keys = plan.keys.reshape(-1)
    pack_key, pack_value = key[0, :, n_prefix:], value[0, :, n_prefix:]
    keys = pack_key[:, flat_keys].view(kv_heads, n_segments, width, dim).transpose(0, 1)  # [S, Hkv, K, d]
    values = pack_value[:, flat_keys].view(kv_heads, n_segments, width, -1).transpose(0, 1)
    if n_prefix:
        prefix_key = key[0, :, :n_prefix].expand(n_segments, -1, -1, -1)
        prefix_value = value[0, :, :n_prefix].expand(n_segments, -1, -1, -1)
        keys, values = torch.cat([prefix_key, keys], dim=2), torch.cat([prefix_value, values], dim=2)
    out = masked_attention(queries, keys, values, plan.visible[:, None], scale, softcap)  # [S, H, C, dv]
    return out.transpose(0, 1).reshape(heads, padded, -1)[None, :, :n]
