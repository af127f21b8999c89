"""Trie packing: DFS order, visibility ranges, answer pairs, templates, pack budgets."""

import random

import numpy as np
import pytest
import torch

from invscale.kernels.tree_attention import tree_mask
from invscale.scoring.trie import (SequenceRef, _chain, _tree, build_pack, build_packs, common_prefix_length,
                                   stem_shared, template, units_of_sequences)
from random_data import random_sequences


def pairs_of(pack):
    """{seq_id: [(pair node, target token), ...]} of a pack."""
    found = {}
    for number, seq_id in enumerate(pack.seq_ids.tolist()):
        pairs = pack.target_pair[pack.seq_offsets[number]:pack.seq_offsets[number + 1]]
        found[seq_id] = [(int(pack.pair_node[p]), int(pack.pair_target[p])) for p in pairs]
    return found


def check_pack(pack, seqs, preface=()):
    """Every node's visible nodes spell a prefix some sequence has, no leaf is computed for nothing,
    and each sequence's pairs are (the node spelling the tokens before a target, the target)."""
    mask = tree_mask(torch.from_numpy(pack.subtree_end)).numpy()
    spelled = {}
    for node in range(pack.n_tokens):
        visible = np.flatnonzero(mask[node])
        assert visible[-1] == node and len(visible) == pack.depth[node] + 1
        spelled[node] = tuple(int(pack.tokens[v]) for v in visible)
    prefixes = {s.tokens[:i] for s in seqs for i in range(1, len(s.tokens) + 1)}
    assert set(spelled.values()) <= prefixes
    read = set(pack.pair_node.tolist())
    for node in range(pack.n_tokens):
        assert pack.subtree_end[node] > node + 1 or node in read  # a leaf is there because it predicts
    pairs = pairs_of(pack)
    assert sorted(pairs) == sorted(s.seq_id for s in seqs)
    whole = {s.seq_id: preface + s.tokens for s in seqs}
    for seq in seqs:
        assert len(pairs[seq.seq_id]) == seq.n_target
        tokens = whole[seq.seq_id]
        for offset, (node, target) in enumerate(pairs[seq.seq_id]):
            d = len(tokens) - seq.n_target + offset  # the target's position in the whole sequence
            assert target == tokens[d]
            if node >= 0:
                assert spelled[node] == tokens[len(preface):d]
            else:  # a preface position, counted from its end
                assert d - 1 == len(preface) + node
    return spelled


@pytest.mark.parametrize("seed", range(6))
def test_pack_reconstructs_every_sequence_and_its_ancestors(seed):
    seqs = random_sequences(seed)
    pack = build_pack(seqs)
    check_pack(pack, seqs)
    predicting = {s.tokens[:i] for s in seqs for i in range(1, len(s.tokens))}
    assert len(predicting) <= pack.n_tokens <= sum(len(s.tokens) for s in seqs)


@pytest.mark.parametrize("seed", range(6))
def test_contexts_and_options_share_every_prefix(seed):
    """Prize-shaped sequences (ragged contexts, options of 1-3 tokens none of which a context
    contains): each predicting prefix is computed exactly once."""
    rng = random.Random(seed)
    contexts = []
    for _ in range(rng.randint(1, 25)):
        base = contexts[rng.randrange(len(contexts))][:rng.randint(0, 6)] if contexts and rng.random() < 0.7 else ()
        contexts.append(base + tuple(rng.randrange(5) for _ in range(rng.randint(1, 6))))
    options = [tuple(rng.randrange(10, 13) for _ in range(rng.randint(1, 3))) for _ in range(4)]
    seqs = [SequenceRef(number, context + option, len(option))
            for number, (context, option) in enumerate((c, o) for c in contexts for o in rng.sample(options, 2))]
    pack = build_pack(seqs)
    check_pack(pack, seqs)
    assert pack.n_tokens == len({s.tokens[:i] for s in seqs for i in range(1, len(s.tokens))})


def test_identical_sequences_share_everything():
    seqs = [SequenceRef(0, (1, 2, 3), 1), SequenceRef(1, (1, 2, 3), 1), SequenceRef(2, (1, 2, 4), 1)]
    pack = build_pack(seqs)
    assert pack.n_tokens == 2 and len(pack.pair_node) == 2
    pairs = pairs_of(pack)
    assert pairs[0] == pairs[1] != pairs[2]


@pytest.mark.parametrize("budget", [1, 5, 12, 40, 1000])
def test_packs_respect_the_budget_and_keep_every_sequence(budget):
    seqs = random_sequences(3, n=60)
    units = units_of_sequences(seqs)
    packs, held = build_packs(units, budget)
    assert held == []
    assert sorted(i for p in packs for i in p.seq_ids.tolist()) == sorted(s.seq_id for s in seqs)
    by_id = {s.seq_id: s for s in seqs}
    for pack in packs:
        check_pack(pack, [by_id[i] for i in pack.seq_ids.tolist()])
        single_unit = len({by_id[i].tokens[:len(by_id[i].tokens) - by_id[i].n_target] for i in pack.seq_ids.tolist()}) == 1
        assert pack.n_tokens <= budget or single_unit


@pytest.mark.parametrize("budget", [6, 30, 1000])
def test_keep_last_hands_back_the_last_pack_unbuilt(budget):
    units = units_of_sequences(random_sequences(4, n=50))
    built, _ = build_packs(units, budget)
    kept, held = build_packs(units, budget, keep_last=True)
    assert len(kept) == len(built) - 1
    for pack, expected in zip(kept, built):
        for name in ("tokens", "depth", "subtree_end", "pair_node", "pair_target", "seq_ids", "target_pair"):
            assert np.array_equal(getattr(pack, name), getattr(expected, name))
    assert sorted(i for u in held for i in u.seq_ids) == sorted(built[-1].seq_ids.tolist())


def test_targets_predicted_inside_the_preface():
    """A sequence that barely extends the preface has targets predicted by preface tokens: their
    pair nodes count back from the preface's end, and targets inside the preface are read there."""
    preface = (7, 8, 9)
    seqs = [SequenceRef(0, (4,), 2),  # targets: 9 (predicted by 8, preface) and 4 (predicted by 9, preface)
            SequenceRef(1, (4, 5), 1),  # target 5 predicted by node 0 (token 4)
            SequenceRef(2, (), 1)]  # the whole sequence is the preface: target 9 predicted by 8
    pack = build_pack(seqs, preface)
    assert pack.tokens.tolist() == [4]
    assert pairs_of(pack) == {0: [(-2, 9), (-1, 4)], 1: [(0, 5)], 2: [(-2, 9)]}
    check_pack(pack, seqs, preface)


def test_targets_reaching_into_a_stem():
    """Continuations with fewer tokens below the stem than they score read their first targets
    from the stem's own nodes."""
    seqs = [SequenceRef(0, (1, 2, 3, 4), 3), SequenceRef(1, (1, 2, 3, 5), 1), SequenceRef(2, (1, 2, 6), 2)]
    pack = build_pack(seqs, (9,))
    check_pack(pack, seqs, (9,))


def test_a_last_token_is_computed_when_another_sequence_extends_it():
    """(1, 2) ends where (1, 2, 3) goes on: node 2 predicts 3, so it stays; 3 and 4 are read by nobody."""
    pack = build_pack([SequenceRef(0, (1, 2), 1), SequenceRef(1, (1, 2, 3), 1), SequenceRef(2, (1, 4), 1)])
    assert pack.tokens.tolist() == [1, 2] and pack.subtree_end.tolist() == [2, 2]
    assert pairs_of(pack) == {0: [(0, 2)], 1: [(1, 3)], 2: [(0, 4)]}


@pytest.mark.parametrize("seed", range(20))
def test_a_chain_template_equals_the_tree_of_one_continuation(seed):
    rng = random.Random(seed)
    tokens = tuple(rng.randrange(4) for _ in range(rng.randint(0, 6)))
    n_target = rng.randint(1, len(tokens) + 2)
    assert _chain(tokens, n_target) == _tree(((tokens, n_target),))


def test_templates_are_built_once():
    junctions = (((5, 6), 1), ((5, 7), 1))
    assert template(junctions) is template(tuple(junctions))


def test_common_prefix_length_with_a_known_start():
    a, b = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0)
    assert [common_prefix_length(a, b, k) for k in (0, 3, 10)] == [10, 10, 10]
    assert common_prefix_length(a, a[:5]) == 5 and common_prefix_length((), a) == 0


def test_stem_sharing_follows_the_hints():
    units = units_of_sequences([SequenceRef(0, (1, 2, 3, 9), 1), SequenceRef(1, (1, 2, 4, 9), 1),
                                SequenceRef(2, (1, 2, 4, 5, 9), 1)])
    assert stem_shared(units) == [0, 2, 3]
    units[2].hint = 3
    assert stem_shared(units) == [0, 2, 3]
