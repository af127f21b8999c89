"""End to end on the tokenizers that broke the old fixed window, and the run-time check of the splice."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from invscale.data import DataError, Row, TaskType
from invscale.scoring import boundary
from invscale.scoring.scorer import ScoringJob
from invscale.scoring.splice_check import SAMPLED, chosen_checks
from invscale.scoring.tokenize import tokenize_rows
from random_data import as_dataset
from reference import max_abs_diff, reference_logprob
from tokenizer_kinds import build

RECORDS = [  # prompts ending in indentation and whitespace runs, classes starting with newlines, an lstrip token
    {"prompt": "\n        ", "classes": ["\n", " \n", " x"], "answer_index": 0},
    {"prompt": "Q: x\n         ", "classes": [" \n", "\n\n", " y"], "answer_index": 1},
    {"prompt": "Question one two three\n" + " " * 9 + "\tx", "classes": [" b", " c"], "answer_index": 0},
    {"prompt": "Question one two three\n" + " " * 9 + "\n", "classes": [" b", " c"], "answer_index": 1},
    {"prompt": "Q: the word is" + " " * 10, "classes": ["[MASK]", " word"], "answer_index": 0},
    {"prompt": "def f(x):\n    return x\n\n\n    ", "classes": ["\n", "  pass", "\treturn"], "answer_index": 2},
]


def _model_for(tokenizer) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)  # far from uniform, so a token difference shows in the log-probs
    return model


@pytest.fixture(scope="module")
def llama3():
    tokenizer = build("llama3", bos=True, added=True)
    return _model_for(tokenizer), tokenizer


def test_whitespace_runs_and_stripping_tokens_score_exactly(llama3):
    model, tokenizer = llama3
    dataset = as_dataset(RECORDS)
    results = {r["index"]: r for r in ScoringJob(model, tokenizer, dataset, backend="sdpa", kernels="torch").results()}
    for row in dataset.rows:
        expected = [reference_logprob(model, tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4, row.prompt


def test_a_wrong_splice_is_refused_before_any_work(llama3, monkeypatch):
    """Were the cut rule wrong (here: the old fixed eight-character window), the check would find a
    row whose spliced tokens differ from its whole-string tokens and refuse the run, naming it."""
    model, tokenizer = llama3
    monkeypatch.setattr(boundary.CutRule, "limit", lambda self, text, end: end - 8)
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: pytest.fail("the model ran"))
    with pytest.raises(DataError, match=r"random\.jsonl: row \d: field 'classes': .* tokenized otherwise"):
        ScoringJob(model, tokenizer, as_dataset(RECORDS), backend="sdpa", kernels="torch")


def test_the_checks_are_a_sample_and_every_risky_junction():
    contexts = [(f"Question {n}: what is {n}?\nAnswer:",) for n in range(3000)]
    continuations = [(" A", " B")] * 3000
    for n in (5, 2500):  # junctions with a whitespace run, and an added token's first character
        contexts[n] = (f"Question {n}:\n    ",)
    continuations[7] = (" <s", " B")
    checks = chosen_checks(contexts, continuations, chunk_rows=2048, added_firsts="<")
    numbers = [number for number, *_ in checks]
    assert {5, 2500, 7} <= set(numbers) and SAMPLED <= len(checks) <= SAMPLED + 6
    for number, neighbour, context, _ in checks:  # the context before it in its chunk's text order
        chunk = number // 2048
        ordered = sorted(c for (c,) in contexts[chunk * 2048:(chunk + 1) * 2048])
        place = ordered.index(context)
        assert neighbour == (ordered[place - 1] if place else None)
    assert checks == chosen_checks(contexts, continuations, chunk_rows=2048, added_firsts="<")  # seeded


def test_a_context_merging_into_its_continuation_is_named_as_such():
    tokenizer = build("gpt2", bos=False, added=False)
    assert len(tokenizer("The", add_special_tokens=False)["input_ids"]) == 1
    rows = [Row(0, "Th", ("e", " 3"), 0)]
    with pytest.raises(DataError, match=r"'Th' \+ 'e' is 1 token\(s\), no more than 'e''s own 1: the context merges"):
        tokenize_rows(tokenizer, rows, TaskType.classification, "d.csv")
    with pytest.raises(DataError, match="the context is empty and the tokenizer adds no BOS"):
        tokenize_rows(tokenizer, [Row(0, "", ("e", " 3"), 0)], TaskType.classification, "d.csv")
