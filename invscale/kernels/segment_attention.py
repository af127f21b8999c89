"""Tree attention at the cost of the visible pairs, in plain torch: the CPU path.

In depth-first order a trie's nodes come in contiguous segments, and every ancestor of a node of
segment ``[a, a + C)`` is either inside the segment or an ancestor of its first node ``a`` (a node
``k < a`` whose subtree reaches into the segment contains ``a``). So a segment's queries need only
the prefix (the cached preface), the path to ``a`` (``depth[a]`` nodes) and the segment itself:
``P + depth + C`` keys per query instead of the ``P + N`` of the dense mask. All segments of a
pack run as one batch ([segments, heads, C, keys]) through :func:`masked_attention`, with the
keys and values of each gathered once per layer and the mask built once per pack.

Where every prefix key is visible to every query (no sliding window, soft cap or ALiBi bias) and
the device is the CPU, the prefix is not gathered per segment at all (:func:`prefix_apart`): all
queries attend to it in one call of torch's CPU flash attention, the queries that share a key head
stacked into one matrix, and the segments attend only to their path and themselves; the two
softmaxes are then merged by their log-sum-exps. That is the same sum over the same keys, split in
two, so the result is the same to rounding, and the prefix costs its pairs' arithmetic alone: no
copy of its keys for each segment and no mask over it. A stack of shared few-shot examples held
above a pack is such a prefix.

The reference is :func:`invscale.kernels.tree_attention.tree_attention_torch` (the dense mask),
which the tests compare this with, windows and soft caps included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from invscale.kernels.tree_attention import masked_attention

# torch's CPU flash attention, which also returns each query's log-sum-exp (what merging two parts
# of one softmax needs; the public scaled_dot_product_attention does not give it)
_FLASH_WITH_LSE = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)

SEGMENT = 64  # queries per segment: the path to each segment's first node is paid once per segment
PATH_STEP = 32  # segments are batched with others whose paths are as long, rounded up to this


@dataclass
class SegmentBatch:
    """Segments whose paths have about the same length, run as one batch.

    segments: [B] which segments; keys: [B, P + K] indices into the prefix-then-pack keys (the
    prefix, the path to the segment's first node, then its own nodes; padding repeats key 0 and is
    masked); mask: [B, 1, C, P + K], 0 where visible and -inf elsewhere, in the queries' dtype (an
    additive mask, so attention need not convert it for every layer). In a plan that keeps the
    prefix apart, the prefix is not among the keys, and the mask's rows are the C queries repeated
    once per query head of a key head ([B, 1, groups × C, K])."""

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
    prefix_apart: bool = False  # the prefix attended to by all queries at once (:func:`prefix_apart`)


def prefix_apart(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int | None = None,
                 softcap: float | None = None, slopes: torch.Tensor | None = None) -> bool:
    """Whether :func:`segment_attention` can attend to the prefix apart from the segments for these
    tensors: every prefix key visible to every query (no window, soft cap or ALiBi), on the CPU, with
    torch's flash attention there and values as wide as keys."""
    return (window is None and softcap is None and slopes is None and _FLASH_WITH_LSE is not None
            and query.device.type == "cpu" and value.shape[-1] == key.shape[-1] == query.shape[-1])


def segment_plan(subtree_end: torch.Tensor, positions: torch.Tensor | None = None, n_prefix: int = 0,
                 window: int | None = None, segment: int = SEGMENT, dtype: torch.dtype = torch.float32,
                 offsets: bool = False, groups: int | None = None) -> SegmentPlan:
    """The segments of a DFS-ordered trie of ``len(subtree_end)`` nodes; with ``window``, keys
    ``window`` or more positions behind a query are hidden (``positions``: [N] of the nodes).
    ``dtype``: the queries' dtype, which the masks take. ``offsets``: keep each key's position
    minus its query's, for ALiBi biases. ``groups`` (query heads per key head): keep the prefix
    apart (only where :func:`prefix_apart` holds), the masks laid out for that grouping."""
    if (window is not None or offsets) and positions is None:
        raise ValueError("a sliding window or ALiBi needs the positions of the pack's nodes")
    if groups is not None and (window is not None or offsets):
        raise ValueError("the prefix is kept apart only where every query sees all of it")
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
                              window, segment, dtype, offsets, groups))
    return SegmentPlan(batches, n, n_segments, segment, prefix_apart=groups is not None)


def _batch(segments, path, starts, subtree_end, positions, n_prefix, window, segment, dtype,
           offsets: bool = False, groups: int | None = None) -> SegmentBatch:
    """The keys and mask of the segments of one path width: the prefix's keys first, unless it is
    kept apart (``groups``: then the mask's rows are repeated for each query head of a key head)."""
    device, n = subtree_end.device, subtree_end.shape[0]
    columns = 0 if groups is not None else n_prefix  # the prefix's keys in the batch
    own = starts[:, None] + torch.arange(segment, device=device)[None, :]  # [B, C]
    keys = torch.cat([path, own], dim=1)  # [B, width + C]
    key_ok = keys < n
    keys = torch.where(key_ok, keys, 0)
    ends = subtree_end[keys]
    visible = key_ok[:, None, :] & (keys[:, None, :] <= own[:, :, None]) & (own[:, :, None] < ends[:, None, :])
    prefix_visible = visible.new_ones(len(segments), segment, columns)
    if window is not None:
        query_positions = positions[own.clamp(max=n - 1)]  # [B, C]
        visible &= query_positions[:, :, None] - positions[keys][:, None, :] < window
        prefix = torch.arange(columns, device=device)
        prefix_visible = query_positions[:, :, None] - prefix[None, None, :] < window
    visible |= (own >= n)[:, :, None] & key_ok[:, None, :]  # padding queries: any key, results dropped
    prefix_keys = torch.arange(columns, device=device).expand(len(segments), -1)
    visible = torch.cat([prefix_visible, visible], dim=2)
    mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))
    all_keys = torch.cat([prefix_keys, keys + n_prefix], dim=1)
    relative = None
    if offsets:
        key_positions = torch.cat([torch.arange(n_prefix, device=device), positions])[all_keys]  # [B, P + K]
        query_positions = positions[own.clamp(max=n - 1)]
        relative = (key_positions[:, None, :] - query_positions[:, :, None]).to(torch.float32)
    mask = mask[:, None] if groups is None else mask[:, None].repeat(1, 1, groups, 1)
    return SegmentBatch(segments, all_keys, mask, relative)


def segment_attention(query, key, value, plan: SegmentPlan, scale: float | None = None,
                      softcap: float | None = None, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Tree attention by segments: same contract and result as the dense reference.

    query: [1, heads, N, d]; key, value: [1, kv_heads, P + N, d] (prefix first); ``slopes`` [heads]:
    ALiBi, each score biased by its head's slope times the key's position minus the query's (the
    plan built with ``offsets``). Returns [1, heads, N, d_value]."""
    if plan.prefix_apart:
        return _attention_prefix_apart(query, key, value, plan, scale)
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


def _attention_prefix_apart(query, key, value, plan: SegmentPlan, scale: float | None) -> torch.Tensor:
    """:func:`segment_attention` for a plan that keeps the prefix apart: the segments over their
    paths and themselves, all queries over the prefix in one call, merged by log-sum-exp."""
    _, heads, n, dim = query.shape
    kv_heads = key.shape[1]
    groups, n_prefix = heads // kv_heads, key.shape[2] - n
    count, size = plan.n_segments, plan.segment
    # queries by segment, those of one key head's query heads stacked: [S, kv_heads, groups × C, d]
    padded = F.pad(query[0], (0, 0, 0, count * size - n)).view(kv_heads, groups, count, size, dim)
    queries = padded.permute(2, 0, 1, 3, 4).reshape(count, kv_heads, groups * size, dim)
    out = query.new_empty(count, kv_heads, groups * size, dim)
    accumulate = torch.promote_types(query.dtype, torch.float32)  # what the flash attention gives log-sum-exps in
    lse = torch.empty(count, kv_heads, groups * size, dtype=accumulate, device=query.device)
    for batch in plan.batches:
        width = batch.keys.shape[1]
        flat_keys = batch.keys.reshape(-1)
        keys = key[0][:, flat_keys].view(kv_heads, -1, width, dim).transpose(0, 1)  # [B, Hkv, K, d]
        values = value[0][:, flat_keys].view(kv_heads, -1, width, dim).transpose(0, 1)
        out[batch.segments], lse[batch.segments] = _FLASH_WITH_LSE(queries[batch.segments], keys, values, 0.0, False,
                                                                   attn_mask=batch.mask, scale=scale)
    out = out.view(count, kv_heads, groups, size, dim).permute(1, 2, 0, 3, 4).reshape(heads, count * size, dim)[:, :n]
    if not n_prefix:
        return out[None]
    lse = lse.view(count, kv_heads, groups, size).permute(1, 2, 0, 3).reshape(heads, count * size)[:, :n]
    prefix_out, prefix_lse = _FLASH_WITH_LSE(query.reshape(1, kv_heads, groups * n, dim), key[:, :, :n_prefix],
                                             value[:, :, :n_prefix], 0.0, False, scale=scale)
    prefix_out, prefix_lse = prefix_out.reshape(heads, n, dim), prefix_lse.reshape(heads, n)
    total = torch.logaddexp(lse, prefix_lse)
    merged = out.to(accumulate).mul_((lse - total).exp_()[..., None])
    merged.addcmul_(prefix_out.to(accumulate), (prefix_lse - total).exp_()[..., None])
    return merged.to(query.dtype)[None]
