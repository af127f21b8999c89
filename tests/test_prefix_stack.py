"""Shared prefixes kept across packs on a stack: each computed once, results equal to the reference.

Data built to stress the stack: groups of items under long group instructions (longer than a pack),
subgroups sharing a question stem, items sharing nothing beyond the run's preface, ragged options;
budgets from smaller than one item to larger than the dataset; every attention backend.
"""

import random

import pytest

from invscale.scoring.scorer import ScoringJob, score_token_sequences
from invscale.scoring.tokenize import continuations
from invscale.scoring.trie import SequenceRef, build_packs, tokens_computed, units_of_sequences
from random_data import WORDS, as_dataset
from reference import max_abs_diff, reference_logprob


def _words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def stacked_records(seed: int, groups: int = 3, per_group: int = 6):
    """Items under ``groups`` long instructions; within a group, pairs of items share a stem."""
    rng = random.Random(seed)
    records = []
    for _ in range(groups):
        instruction = f"Task about {_words(rng, 2)}. " + _words(rng, rng.randint(30, 60)) + "\n"
        for n in range(per_group):
            stem = instruction + ("Shared question " + _words(rng, 8) if n % 2 else "Question " + _words(rng, 4))
            classes = [" " + _words(rng, rng.randint(1, 3)) for _ in range(rng.randint(2, 4))]
            records.append({"prompt": stem + " " + _words(rng, rng.randint(1, 6)) + "?\nAnswer:",
                            "classes": list(dict.fromkeys(classes)), "answer_index": 0})
    records.append({"prompt": "Something else entirely: " + _words(rng, 5), "classes": [" yes", " no"],
                    "answer_index": 1})
    return records


@pytest.mark.parametrize("backend, budget", [("sdpa", 16), ("sdpa", 4096), ("segments", 16), ("segments", 48),
                                             ("flex", 48)])
def test_stacked_packs_equal_the_reference(loaded_models, backend, budget):
    loaded = loaded_models["llama-gqa3"]
    dataset = as_dataset(stacked_records(budget))
    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=budget, backend=backend,
                     kernels="torch")
    results = {r["index"]: r for r in job.results()}
    if budget < 100:
        assert any(pack.stack for pack in job.plan()), "prefixes longer than a pack are held on the stack"
    for row in dataset.rows:
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4


def test_the_triton_tree_attention_sees_the_stack(loaded_models):
    loaded = loaded_models["opt-350m-shape"]
    dataset = as_dataset(stacked_records(5, groups=2, per_group=3))
    results = {r["index"]: r for r in ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=24,
                                                 backend="triton", kernels="triton").results()}
    for row in dataset.rows:
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4


@pytest.mark.parametrize("budget", [16, 48, 200, 4096])
def test_each_distinct_prefix_is_computed_once(loaded_models, budget):
    """Exactly once where a context's options fit half a pack; below that they are split into
    several units, whose options' shared first tokens are computed in each (a few per cent)."""
    loaded = loaded_models["opt-plain"]
    dataset = as_dataset(stacked_records(3))
    sequences = [tuple(loaded.tokenizer(p + c)["input_ids"]) for row in dataset.rows
                 for p, c in continuations(row, dataset.task_type)]
    distinct_prefixes = {s[:i] for s in sequences for i in range(1, len(s))}  # those that predict a token
    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=budget)
    list(job.results())
    if budget >= 48:
        assert job.stats.unique_tokens == len(distinct_prefixes)
    else:
        assert len(distinct_prefixes) <= job.stats.unique_tokens <= 1.05 * len(distinct_prefixes)
    assert all(pack.n_tokens <= budget for pack in job.plan() if pack.n_tokens > 1)
    assert job.stats.fewest_tokens == len(distinct_prefixes)
    assert job.stats.hf_tokens == sum(map(len, {s[:-1] for s in sequences}))  # one-token options: one context run


@pytest.mark.parametrize("stack_tokens", [0, 20, 60])
def test_a_stack_budget_too_small_recomputes_and_stays_exact(loaded_models, stack_tokens):
    """Prefixes that would take the stack past its budget are computed in each of their packs."""
    loaded = loaded_models["llama-gqa2"]
    dataset = as_dataset(stacked_records(11))
    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=24, stack_tokens=stack_tokens)
    results = {r["index"]: r for r in job.results()}
    unbounded = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=24)
    list(unbounded.results())
    assert all(sum(map(len, pack.stack)) <= stack_tokens for pack in job.plan())
    assert job.stats.stack.refused > 0 and job.stats.unique_tokens > unbounded.stats.unique_tokens
    assert job.stats.fewest_tokens == unbounded.stats.fewest_tokens
    for row in dataset.rows:
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4


def test_token_sequences_use_the_stack(loaded_models):
    """lm-eval's path: sequences given whole, two few-shot prefixes longer than a pack."""
    loaded = loaded_models["opt-plain"]
    rng = random.Random(4)
    shots = [tuple(rng.randrange(4, 500) for _ in range(60)) for _ in range(2)]
    sequences = [(shot + tuple(rng.randrange(4, 500) for _ in range(rng.randint(2, 9))) + option, len(option))
                 for shot in shots for _ in range(8) for option in ((7,), (8, 9), (10,))]
    seen = []
    logprobs, greedy = score_token_sequences(loaded.model, sequences, max_tokens_per_pack=32, on_pack=seen.append)
    assert sum(seen) == len(sequences) and len(seen) > 2
    plain, _ = score_token_sequences(loaded.model, sequences, max_tokens_per_pack=100_000)
    assert max_abs_diff(logprobs, plain) <= 1e-4
    refs = [SequenceRef(n, tokens, k) for n, (tokens, k) in enumerate(sequences)]
    packs, _ = build_packs(units_of_sequences(refs), 32, stacks=True)
    distinct = {tokens[:i] for tokens, _ in sequences for i in range(1, len(tokens))}
    assert tokens_computed(packs) == len(distinct)


def test_torchrun_deals_the_packs_under_one_prefix_to_one_process(loaded_models):
    from invscale.scoring.scorer import stack_units

    loaded = loaded_models["opt-plain"]
    packs = ScoringJob(loaded.model, loaded.tokenizer, as_dataset(stacked_records(6)), max_tokens_per_pack=24).plan()
    units = list(stack_units(packs))
    assert [pack for unit in units for pack in unit] == packs and len(units) < len(packs)
    owners = {}
    for number, unit in enumerate(units):
        for pack in unit:
            if pack.stack:
                assert owners.setdefault(pack.stack[0], number) == number
