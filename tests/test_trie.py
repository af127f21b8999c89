"""Trie packing: DFS order, visibility ranges, answer pairs, pack budgets."""

import numpy as np
import pytest
import torch

from invscale.kernels.tree_attention import tree_mask
from invscale.scoring.trie import SequenceRef, build_pack, build_packs, plan_packs
from random_data import random_sequences


@pytest.mark.parametrize("seed", range(5))
def test_pack_reconstructs_every_sequence_and_its_ancestors(seed):
    seqs = random_sequences(seed)
    pack = build_pack(seqs)
    # computed: every prefix that predicts a token (a sequence's last token alone predicts nothing)
    distinct_prefixes = {s.tokens[:i] for s in seqs for i in range(1, len(s.tokens))}
    assert pack.n_tokens == len(distinct_prefixes)
    mask = tree_mask(torch.from_numpy(pack.subtree_end)).numpy()
    # the nodes visible to a node, in order, spell the path from the root to it
    path_of = {}
    for node in range(pack.n_tokens):
        visible = np.flatnonzero(mask[node])
        assert visible[-1] == node and len(visible) == pack.depth[node] + 1
        path_of[tuple(int(pack.tokens[v]) for v in visible)] = node
    assert set(path_of) == distinct_prefixes
    by_id = {s.seq_id: s for s in seqs}
    for seq_id, pairs in zip(pack.seq_ids, pack.seq_pairs):
        seq = by_id[seq_id]
        assert len(pairs) == seq.n_target
        for offset, pair in enumerate(pairs):
            d = len(seq.tokens) - seq.n_target + offset
            assert pack.pair_node[pair] == path_of[seq.tokens[:d]]
            assert pack.pair_target[pair] == seq.tokens[d]


def test_identical_sequences_share_everything():
    seqs = [SequenceRef(0, (1, 2, 3), 1), SequenceRef(1, (1, 2, 3), 1), SequenceRef(2, (1, 2, 4), 1)]
    pack = build_pack(seqs)
    assert pack.n_tokens == 2 and len(pack.pair_node) == 2
    pairs = dict(zip(pack.seq_ids, (p.tolist() for p in pack.seq_pairs)))
    assert pairs[0] == pairs[1] != pairs[2]


@pytest.mark.parametrize("budget", [1, 5, 12, 40, 1000])
def test_plan_respects_budget_and_keeps_every_sequence(budget):
    seqs = random_sequences(3, n=60)
    packs = plan_packs(seqs, budget)
    assert sorted(s.seq_id for p in packs for s in p) == sorted(s.seq_id for s in seqs)
    for planned in packs:
        size = build_pack(planned).n_tokens
        assert size <= budget or len(planned) == 1


@pytest.mark.parametrize("budget", [6, 30, 1000])
def test_build_packs_equals_planning_then_building(budget):
    """One pass (sorted once) builds the packs that planning and building each would; with
    keep_last, the last pack's sequences come back unbuilt."""
    seqs = random_sequences(4, n=50)
    built, held = build_packs(seqs, budget)
    assert held == []
    planned = plan_packs(seqs, budget)
    assert [p.seq_ids for p in built] == [[s.seq_id for s in sorted(group, key=lambda s: s.tokens)] for group in planned]
    for pack, group in zip(built, planned):
        expected = build_pack(group)
        for name in ("tokens", "depth", "subtree_end", "pair_node", "pair_target"):
            assert np.array_equal(getattr(pack, name), getattr(expected, name))
    built, held = build_packs(seqs, budget, keep_last=True)
    assert len(built) == len(planned) - 1 and sorted(s.seq_id for s in held) == sorted(s.seq_id for s in planned[-1])


def test_targets_predicted_inside_the_preface():
    """A sequence that barely extends the preface has targets predicted by preface tokens: their
    pair nodes count back from the preface's end, and targets inside the preface are read there."""
    preface = (7, 8, 9)
    seqs = [SequenceRef(0, (4,), 2),  # targets: 9 (predicted by 8, preface) and 4 (predicted by 9, preface)
            SequenceRef(1, (4, 5), 1),  # target 5 predicted by node 0 (token 4)
            SequenceRef(2, (), 1)]  # the whole sequence is the preface: target 9 predicted by 8
    pack = build_pack(seqs, preface)
    pairs = {seq_id: [(int(pack.pair_node[p]), int(pack.pair_target[p])) for p in group]
             for seq_id, group in zip(pack.seq_ids, pack.seq_pairs)}
    assert pack.tokens.tolist() == [4]
    assert pairs == {0: [(-2, 9), (-1, 4)], 1: [(0, 5)], 2: [(-2, 9)]}



def test_a_last_token_is_computed_when_another_sequence_extends_it():
    """(1, 2) ends where (1, 2, 3) goes on: node 2 predicts 3, so it stays; 3 and 4 are read by nobody."""
    pack = build_pack([SequenceRef(0, (1, 2), 1), SequenceRef(1, (1, 2, 3), 1), SequenceRef(2, (1, 4), 1)])
    assert pack.tokens.tolist() == [1, 2] and pack.subtree_end.tolist() == [2, 2]
    pairs = {seq_id: [(int(pack.pair_node[p]), int(pack.pair_target[p])) for p in group]
             for seq_id, group in zip(pack.seq_ids, pack.seq_pairs)}
    assert pairs == {0: [(0, 2)], 1: [(1, 3)], 2: [(0, 4)]}
