"""The trie scorer equals the plain per-option full-forward reference (fp32, |Δ logprob| <= 1e-4)."""

import pytest
import torch

from invscale.data import TaskType
from invscale.scoring.scorer import ScoringJob
from invscale.scoring.tokenize import continuations
from random_data import as_dataset, random_classification, random_text
from reference import isclose, max_abs_diff, reference_classification, reference_logprob

TOL = 1e-4


def score_all(loaded, dataset, max_tokens, backend="sdpa", kernels="torch"):
    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=max_tokens, backend=backend,
                     kernels=kernels)
    results = {r["index"]: r for r in job.results()}
    assert sorted(results) == [row.index for row in dataset.rows], "every row gets exactly one result"
    return job, results


CASES = [(4096, True, 1, "sdpa", "torch"), (4096, False, 2, "sdpa", "torch"), (40, True, 3, "sdpa", "torch"),
         (7, False, 4, "sdpa", "torch"), (4096, True, 5, "flex", "torch"), (40, False, 6, "flex", "torch"),
         (4096, True, 10, "segments", "torch"), (40, False, 11, "segments", "torch")]
TRITON_CASES = [(4096, True, 7, "auto", "triton"), (40, False, 8, "auto", "triton")]  # slow in the interpreter


@pytest.mark.parametrize("checkpoint,max_tokens,preface,seed,backend,kernels",
                         [(c, *case) for c in ("opt-plain", "opt-350m-shape", "llama-gqa2", "llama-gqa3") for case in CASES]
                         + [("llama-gqa3", *TRITON_CASES[0])] + [("opt-350m-shape", *case) for case in TRITON_CASES])
def test_classification_matches_reference(loaded_models, checkpoint, max_tokens, preface, seed, backend, kernels):
    loaded = loaded_models[checkpoint]
    dataset = as_dataset(random_classification(seed, preface=preface))
    job, results = score_all(loaded, dataset, max_tokens, backend, kernels)
    if max_tokens < 50:
        assert job.stats.packs > 1
    for row in dataset.rows:
        expected_lps = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        got = results[row.index]
        assert max_abs_diff(got["class_logprobs"], expected_lps) <= TOL
        # metrics from the scorer's log-probs equal the reference metrics of the reference log-probs
        expected = reference_classification(expected_lps, row.answer_index, row.classes)
        assert isclose(got["loss"], expected["loss"], TOL)
        assert isclose(got["total_logprob"], expected["total_logprob"], TOL)
        assert got["predicted"] == expected["predicted"]
        assert got["correct"] == expected["correct"]
        assert got["correct_norm"] == expected["correct_norm"]
        assert got["tag"] == row.extra["tag"], "extra columns pass through"


@pytest.mark.parametrize("checkpoint", ["opt-plain", "opt-350m-shape", "llama-gqa3"])
def test_triton_kernels_equal_torch_kernels_end_to_end(loaded_models, checkpoint):
    loaded = loaded_models[checkpoint]
    dataset = as_dataset(random_classification(9, n_rows=20))
    job, with_triton = score_all(loaded, dataset, 200, backend="auto", kernels="triton")
    assert job.backend == "triton" and job.kernels == "triton" and job.stats.packs > 1
    _, with_torch = score_all(loaded, dataset, 200, backend="auto", kernels="torch")
    for index, result in with_triton.items():
        assert max_abs_diff(result["class_logprobs"], with_torch[index]["class_logprobs"]) <= TOL
        assert result["predicted"] == with_torch[index]["predicted"]


def test_packs_that_split_items_still_exact(loaded_models):
    """A budget smaller than one item forces its options into different packs."""
    loaded = loaded_models["opt-plain"]
    records = random_classification(5, n_rows=3, preface=False, duplicates=False)
    dataset = as_dataset(records)
    job, results = score_all(loaded, dataset, max_tokens=12)
    packs = job.plan()
    assert len(packs) > len(dataset.rows) and min(len(p.seq_ids) for p in packs) >= 1
    for row in dataset.rows:
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= TOL


def test_rows_repeating_a_prompt_are_grouped_exactly(loaded_models):
    """Rows with the same prompt and options (other answers, other extra columns) are scored once
    and each gets its own metrics; the same prompt with other options is another item."""
    loaded = loaded_models["opt-plain"]
    records = [{"prompt": "Question: is the sky blue?\nAnswer:", "classes": [" yes", " no"], "answer_index": 0, "tag": 1},
               {"prompt": "Question: is grass red?\nAnswer:", "classes": [" yes", " no"], "answer_index": 1, "tag": 2},
               {"prompt": "Question: is the sky blue?\nAnswer:", "classes": [" yes", " no"], "answer_index": 1, "tag": 3},
               {"prompt": "Question: is the sky blue?\nAnswer:", "classes": [" no", " maybe", " yes"], "answer_index": 2,
                "tag": 4},
               {"prompt": "Question: is the sky blue?\nAnswer:", "classes": [" yes", " no"], "answer_index": 0, "tag": 5}]
    dataset = as_dataset(records)
    job, results = score_all(loaded, dataset, max_tokens=4096)
    assert len(job.items) == 3 and job.stats.items == 5
    for row in dataset.rows:
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        got = results[row.index]
        assert max_abs_diff(got["class_logprobs"], expected) <= TOL
        assert got["correct"] == reference_classification(expected, row.answer_index, row.classes)["correct"]
        assert got["tag"] == row.extra["tag"]


def test_joint_tokenization_differs_from_split(loaded_models):
    """Classes without a leading space merge with the prompt's last word; scores stay exact."""
    loaded = loaded_models["opt-plain"]
    records = [{"prompt": "The answer is th", "classes": ["e", "ere", "ing", " real"], "answer_index": 1},
               {"prompt": "Question: what is it?\nAnswer: an", "classes": ["swer", "d", "y"], "answer_index": 0}]
    dataset = as_dataset(records)
    tok = loaded.tokenizer
    joint = tok("The answer is th" + "e")["input_ids"]
    split = tok("The answer is th")["input_ids"] + tok("e", add_special_tokens=False)["input_ids"]
    assert joint != split, "the test needs a case where the joint tokenization differs"
    _, results = score_all(loaded, dataset, 4096)
    for row in dataset.rows:
        expected = [reference_logprob(loaded.model, tok, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= TOL


@pytest.mark.parametrize("task_type", [TaskType.logodds, TaskType.absolute_logodds])
def test_logodds_matches_reference(loaded_models, task_type):
    import random

    loaded = loaded_models["opt-350m-shape"]
    rng = random.Random(7)
    records = [{"prompt": random_text(rng, 3, 20) + "?", "other_prompt": random_text(rng, 3, 20) + "?",
                "classes": [" yes", " no"], "answer_index": i % 2} for i in range(6)]
    dataset = as_dataset(records, task_type=task_type)
    _, results = score_all(loaded, dataset, 64)
    for row in dataset.rows:
        lp = {(p, c): reference_logprob(loaded.model, loaded.tokenizer, p, c)
              for p in (row.prompt, row.other_prompt) for c in row.classes}
        # the prize pipeline: logodds(p) = lp(c0) - lp(c1); difference = prompt's - other_prompt's, negated
        # when the answer is class 1; correct = argmax over the classes after other_prompt
        c0, c1 = row.classes
        difference = (lp[row.prompt, c0] - lp[row.prompt, c1]) - (lp[row.other_prompt, c0] - lp[row.other_prompt, c1])
        if row.answer_index == 1:
            difference = -difference
        if task_type is TaskType.absolute_logodds:
            difference = abs(difference)
        got = results[row.index]
        assert isclose(got["logodds_difference"], difference, TOL) and got["loss"] == got["logodds_difference"]
        other_argmax = int(lp[row.other_prompt, c1] > lp[row.other_prompt, c0])
        assert got["correct"] == (other_argmax == row.answer_index)
        total = torch.logsumexp(torch.tensor([lp[p, c] for p in (row.prompt, row.other_prompt) for c in (c0, c1)],
                                             dtype=torch.float64), dim=0).item()
        assert isclose(got["total_logprob"], total, TOL)


def test_sequence_prob_matches_reference(loaded_models):
    import random

    loaded = loaded_models["opt-plain"]
    rng = random.Random(11)
    records = [{"prompt": "Repeat after me: " + random_text(rng, 0, 10), "completion": " " + random_text(rng, 1, 12)}
               for _ in range(8)]
    dataset = as_dataset(records)
    assert dataset.task_type is TaskType.sequence_prob
    _, results = score_all(loaded, dataset, 30)
    for row in dataset.rows:
        expected = -reference_logprob(loaded.model, loaded.tokenizer, row.prompt, row.completion)
        assert isclose(results[row.index]["loss"], expected, TOL)


def test_unique_token_count_counts_the_preface_once(loaded_models):
    """triviaMod-like data: a long shared instruction, per-item questions, 4 one-letter options."""
    loaded = loaded_models["opt-plain"]
    records = random_classification(9, n_rows=10, preface=True, duplicates=False)
    for record in records:
        record["classes"] = [" A", " B", " C", " D"][: len(record["classes"])] + [" A", " B", " C", " D"][len(record["classes"]):]
        record["answer_index"] = record["answer_index"] % 4
    dataset = as_dataset(records)
    sequences = [tuple(loaded.tokenizer(p + c)["input_ids"]) for row in dataset.rows for p, c in continuations(row, dataset.task_type)]
    distinct_prefixes = {s[:i] for s in sequences for i in range(1, len(s))}  # those that predict a token
    shared = 0
    while all(len(s) > shared and s[shared] == sequences[0][shared] for s in sequences):
        shared += 1
    for budget in (4096, 50):
        job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=budget)
        list(job.results())
        # the preface is the instructions' tokens up to a cut a few characters before their end
        assert shared - 4 <= job.stats.preface_tokens <= shared and shared > 10
        assert job.stats.naive_tokens == sum(len(s) for s in sequences)
        if budget == 4096:
            assert job.stats.packs == 1 and job.stats.unique_tokens == len(distinct_prefixes)
        else:  # split packs recompute shared item prompts, never the preface
            assert job.stats.unique_tokens >= len(distinct_prefixes)
            assert all(p.n_tokens > 0 for p in job.plan())


def test_skip_indexes_scores_only_the_rest(loaded_models):
    loaded = loaded_models["opt-plain"]
    dataset = as_dataset(random_classification(13, n_rows=6))
    full = ScoringJob(loaded.model, loaded.tokenizer, dataset)
    partial = ScoringJob(loaded.model, loaded.tokenizer, dataset, skip_indexes={0, 2, 3})
    assert partial.preface == full.preface
    full_results = {r["index"]: r for r in full.results()}
    partial_results = {r["index"]: r for r in partial.results()}
    assert sorted(partial_results) == [1, 4, 5, 6]
    for index, result in partial_results.items():  # the same packs run: the same numbers, to the bit
        assert result == full_results[index]


def test_model_attention_is_restored(loaded_models):
    loaded = loaded_models["opt-plain"]
    before = loaded.model.config._attn_implementation
    list(ScoringJob(loaded.model, loaded.tokenizer, as_dataset(random_classification(3, n_rows=2))).results())
    assert loaded.model.config._attn_implementation == before


def test_chunked_planning_gives_the_same_results(loaded_models):
    """Rows tokenized and planned a few at a time (on the planner thread) score as in one chunk."""
    loaded = loaded_models["llama-gqa2"]
    dataset = as_dataset(random_classification(21, n_rows=16))
    one = {r["index"]: r for r in ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=64).results()}
    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=64, chunk_rows=3)
    chunked = {r["index"]: r for r in job.results()}
    assert sorted(chunked) == sorted(one)
    for index, result in chunked.items():
        assert max_abs_diff(result["class_logprobs"], one[index]["class_logprobs"]) <= 1e-5


@pytest.mark.parametrize("checkpoint", ["opt-plain", "llama-gqa3"])
def test_whole_string_path_and_targets_predicted_by_the_preface(loaded_models, checkpoint):
    """Every row with the same prompt: on the whole-string path the preface is all of it, so the
    first answer token of every option is predicted by the preface's last token."""
    loaded = loaded_models[checkpoint]
    records = [{"prompt": "Question: which is it?\nAnswer:", "classes": [" yes", " no", " maybe so"][:2 + i % 2],
                "answer_index": 0} for i in range(5)]
    dataset = as_dataset(records)
    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, splice=False)
    assert any((pack.pair_node < 0).any() for pack in job.plan())
    spliced = {r["index"]: r for r in ScoringJob(loaded.model, loaded.tokenizer, dataset).results()}
    for result in list(job.results()):
        row = dataset.rows[result["index"]]
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(result["class_logprobs"], expected) <= TOL
        assert max_abs_diff(spliced[row.index]["class_logprobs"], expected) <= TOL


def test_a_planner_failure_reaches_the_caller(loaded_models, monkeypatch):
    """An error while planning a later chunk stops the run with that error (the rows of earlier
    packs were already yielded), and the planner thread ends."""
    import gc
    import threading

    from invscale.scoring.tokenize import PairTokenizer

    loaded = loaded_models["opt-plain"]
    dataset = as_dataset(random_classification(23, n_rows=12))
    calls = {"n": 0}
    original = PairTokenizer.contexts

    def failing(self, contexts, continuations):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("planner broke")
        return original(self, contexts, continuations)

    job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=30, chunk_rows=3)
    monkeypatch.setattr(PairTokenizer, "contexts", failing)  # the third chunk the planner tokenizes
    seen = []
    with pytest.raises(RuntimeError, match="planner broke"):
        for result in job.results():
            seen.append(result["index"])
    assert seen and len(seen) < len(dataset.rows)
    assert not [t for t in threading.enumerate() if t.name == "invscale-planner"]
    assert gc.get_freeze_count() == 0  # the heap frozen while the job planned is handed back


def test_per_token_means_divide_by_the_tokens_each_option_has(loaded_models):
    """Each class's mean log-prob per token: its log-prob over the tokens the joint tokenization gives
    it (the sequence's tokens after the prompt's), the same for a repeated row and a completion."""
    loaded = loaded_models["llama-gqa2"]
    tokenizer = loaded.tokenizer
    records = random_classification(77, n_rows=10)  # the last row repeats the first
    dataset = as_dataset(records)
    results = {r["index"]: r for r in ScoringJob(loaded.model, tokenizer, dataset, max_tokens_per_pack=40).results()}
    for row in dataset.rows:
        result = results[row.index]
        for text, logprob, mean in zip(row.classes, result["class_logprobs"], result["class_mean_token_logprobs"]):
            tokens = len(tokenizer(row.prompt + text)["input_ids"]) - len(tokenizer(row.prompt)["input_ids"])
            assert isclose(mean * tokens, logprob, tol=1e-9)
        assert result["answer_mean_token_logprob"] == result["class_mean_token_logprobs"][row.answer_index]
    completions = as_dataset([{"prompt": r["prompt"], "completion": r["classes"][0]} for r in records[:4]])
    for row, result in zip(completions.rows, sorted(ScoringJob(loaded.model, tokenizer, completions).results(),
                                                     key=lambda r: r["index"])):
        tokens = len(tokenizer(row.prompt + row.completion)["input_ids"]) - len(tokenizer(row.prompt)["input_ids"])
        assert isclose(result["mean_token_logprob"] * tokens, result["logprob"], tol=1e-9)
