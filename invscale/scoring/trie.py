"""Pack token sequences into tries so each unique token is computed once.

A *pack* is one flat sequence of trie nodes in depth-first order. Node ``k`` is visible to
node ``q`` iff ``k <= q < subtree_end[k]`` (``k`` is ``q`` or one of its ancestors), and each node's
position id is its depth. Sorting the sequences lexicographically makes the DFS order simply the
concatenation of every sequence's suffix after its longest common prefix with the one before.

The *preface* is a token prefix every sequence of a dataset shares (BOS, shared instructions,
worked examples); it is computed once per dataset and every pack attends to its cached keys and
values, so pack positions start at the preface length. Sequences here hold their tokens after
the preface. A target whose predicting token lies inside the preface (a sequence that barely
extends it) is read from the preface's own last hidden states: its pair node is negative, counted
from the preface's end (-1 is the preface's last token).

A sequence's last token is computed only when something reads it (another sequence extends it):
with one-token options such as " A", that is one node per option saved.

Packs are built with array operations on a padded [sequences × length] matrix (no per-token
Python), so planning keeps up with the device on large datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np


def common_prefix(sequences) -> tuple[int, ...]:
    """The tokens every one of ``sequences`` (token tuples) starts with; () for none."""
    sequences = iter(sequences)
    prefix = next(sequences, ())
    for tokens in sequences:
        prefix = prefix[:common_prefix_length(prefix, tokens)]
    return prefix


def common_prefix_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Length of the longest common prefix of two token tuples."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # binary search on slice equality: each comparison runs in C
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class SequenceRef:
    """A sequence to pack: its id (for the caller), its tokens after the preface and how many of
    the whole sequence's last tokens are scored."""

    seq_id: int
    tokens: tuple[int, ...]
    n_target: int


@dataclass
class Pack:
    """One packed trie.

    tokens, depth, subtree_end: [N] per node in DFS order.
    pair_node, pair_target: [T] the unique (predicting node, target token) pairs to score; a
    negative node is a preface position counted from the preface's end.
    seq_ids: the sequences in this pack; seq_pairs[i]: indices into the pairs for seq_ids[i].
    """

    tokens: np.ndarray
    depth: np.ndarray
    subtree_end: np.ndarray
    pair_node: np.ndarray
    pair_target: np.ndarray
    seq_ids: list[int]
    seq_pairs: list[np.ndarray]

    @property
    def n_tokens(self) -> int:
        """Unique tokens computed for this pack."""
        return int(self.tokens.shape[0])


@dataclass
class _Sorted:
    """Sequences in lexicographic order as a padded matrix, with each one's common prefix length
    with the one before it (0 for the first)."""

    refs: list[SequenceRef]
    matrix: np.ndarray  # [n, width] int64, padded with -1
    lengths: np.ndarray
    shared: np.ndarray

    def part(self, start: int, stop: int) -> "_Sorted":
        shared = self.shared[start:stop].copy()
        shared[:1] = 0
        return _Sorted(self.refs[start:stop], self.matrix[start:stop], self.lengths[start:stop], shared)


def _sorted(sequences: list[SequenceRef]) -> _Sorted:
    refs = sorted(sequences, key=lambda s: s.tokens)
    lengths = np.fromiter((len(s.tokens) for s in refs), dtype=np.int64, count=len(refs))
    width = max(int(lengths.max()) if len(refs) else 0, 1)
    matrix = np.full((len(refs), width), -1, dtype=np.int64)
    total = int(lengths.sum())
    rows = np.repeat(np.arange(len(refs)), lengths)
    columns = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    matrix[rows, columns] = np.fromiter(chain.from_iterable(s.tokens for s in refs), dtype=np.int64, count=total)
    shared = np.zeros(len(refs), dtype=np.int64)
    if len(refs) > 1:
        differs = matrix[1:] != matrix[:-1]
        first = np.where(differs.any(axis=1), differs.argmax(axis=1), width)
        shared[1:] = np.minimum(first, np.minimum(lengths[1:], lengths[:-1]))
    return _Sorted(refs, matrix, lengths, shared)


def _build(batch: _Sorted, preface: tuple[int, ...]) -> Pack:
    n, width = batch.matrix.shape
    columns = np.arange(width)
    new = (columns[None, :] >= batch.shared[:, None]) & (columns[None, :] < batch.lengths[:, None])
    tokens = batch.matrix[new]
    depth = np.broadcast_to(columns, (n, width))[new]
    count = int(tokens.shape[0])
    node = np.full((n, width), -1, dtype=np.int64)
    node[new] = np.arange(count)
    # a node a row shares with the row before it was created by the last row above that created one
    creator = np.maximum.accumulate(np.where(new, np.arange(n)[:, None], -1), axis=0)
    node = node[np.maximum(creator, 0), columns[None, :]]
    subtree_end = _subtree_end(depth, count)
    # answer pairs: the last n_target positions of each sequence and the nodes that predict them
    n_target = np.fromiter((s.n_target for s in batch.refs), dtype=np.int64, count=n)
    row = np.repeat(np.arange(n), n_target)
    position = (batch.lengths - n_target)[row] + np.arange(int(n_target.sum())) - np.repeat(
        np.cumsum(n_target) - n_target, n_target)
    predictor = position - 1
    pair_node = np.where(predictor >= 0, node[row, np.maximum(predictor, 0)], predictor)
    tokens, depth, subtree_end, pair_node = _drop_unread_leaves(tokens, depth, subtree_end, pair_node)
    preface_tokens = np.asarray(preface, dtype=np.int64)
    inside = batch.matrix[row, np.maximum(position, 0)]
    pair_target = np.where(position >= 0, inside, preface_tokens[np.minimum(position, -1)] if len(preface) else inside)
    keys = (pair_node + len(preface)) * (1 << 32) + pair_target
    unique, inverse = np.unique(keys, return_inverse=True)
    return Pack(
        tokens=tokens, depth=depth.copy(), subtree_end=subtree_end,
        pair_node=unique // (1 << 32) - len(preface), pair_target=unique % (1 << 32),
        seq_ids=[s.seq_id for s in batch.refs], seq_pairs=np.split(inverse.reshape(-1), np.cumsum(n_target)[:-1]),
    )


def _drop_unread_leaves(tokens, depth, subtree_end, pair_node):
    """Leave out the nodes nothing reads: a sequence's last token predicts nothing of its own, so
    unless another sequence extends it (or it predicts a target) its output is never used. Such a
    node is a leaf, so dropping it leaves every other node's ancestors and subtree as they were;
    indices are renumbered and subtree ends counted over the nodes kept."""
    count = tokens.shape[0]
    read = np.zeros(count, dtype=bool)
    read[pair_node[pair_node >= 0]] = True
    keep = read | (subtree_end != np.arange(1, count + 1))
    if keep.all():
        return tokens, depth, subtree_end, pair_node
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept nodes with a smaller index
    pair_node = np.where(pair_node >= 0, kept_before[np.maximum(pair_node, 0)], pair_node)
    return tokens[keep], depth[keep], kept_before[subtree_end][keep], pair_node


def _subtree_end(depth: np.ndarray, count: int) -> np.ndarray:
    """For each node, the next node at its depth or above (where its subtree ends), else ``count``."""
    end = np.full(count, count, dtype=np.int64)
    for level in range(int(depth.max()) + 1 if count else 0):
        at_or_above = np.flatnonzero(depth <= level)
        here = np.flatnonzero(depth == level)
        after = np.searchsorted(at_or_above, here, side="right")
        found = after < len(at_or_above)
        end[here[found]] = at_or_above[after[found]]
    return end


def build_pack(sequences: list[SequenceRef], preface: tuple[int, ...] = ()) -> Pack:
    """Build the DFS-ordered trie of ``sequences`` with its visibility ranges and answer pairs;
    ``preface`` is needed only when a target's predictor lies inside it."""
    return _build(_sorted(sequences), preface)


def _pack_bounds(batch: _Sorted, max_tokens: int) -> list[int]:
    """Where packs of at most ``max_tokens`` unique tokens start, greedily in sorted order (a
    sequence longer than the budget gets a pack of its own)."""
    starts, used = [0], 0
    for index, (length, shared) in enumerate(zip(batch.lengths.tolist(), batch.shared.tolist())):
        cost = length - shared
        if index and used + cost > max_tokens:
            starts.append(index)
            used, cost = 0, length
        used += cost
    return starts


def plan_packs(sequences: list[SequenceRef], max_tokens: int) -> list[list[SequenceRef]]:
    """Group sequences into packs of at most ``max_tokens`` unique tokens.

    Sequences are visited in lexicographic order so that neighbours share prefixes (worked
    examples, repeated questions); each costs its tokens after the prefix it shares with the
    previous one, which bounds the trie's growth, so no pack exceeds the budget unless one
    sequence alone does (then it gets a pack of its own).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    batch = _sorted(sequences)
    starts = _pack_bounds(batch, max_tokens) if batch.refs else []
    return [batch.refs[a:b] for a, b in zip(starts, starts[1:] + [len(batch.refs)])]


def build_packs(sequences: list[SequenceRef], max_tokens: int, preface: tuple[int, ...] = (),
                keep_last: bool = False) -> tuple[list[Pack], list[SequenceRef]]:
    """Plan and build packs in one pass (sorted once). With ``keep_last`` the last, possibly
    unfilled pack is not built but handed back, to be planned again with the next chunk."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not sequences:
        return [], []
    batch = _sorted(sequences)
    starts = _pack_bounds(batch, max_tokens)
    bounds = list(zip(starts, starts[1:] + [len(batch.refs)]))
    held = []
    if keep_last:
        last = bounds.pop()
        held = batch.refs[last[0]:last[1]]
    return [_build(batch.part(a, b), preface) for a, b in bounds], held

