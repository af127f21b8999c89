"""Chain-of-thought before the answer: classes scored exactly after the chain's own token ids,
budgets as variants, resumable and recorded, bad settings refused in one line."""

import json

import pytest
import torch

from invscale import api
from invscale.chain_of_thought import ANSWER_CUE, ChainJob, ChainOfThought, named_class
from invscale.data import DataError
from invscale.decoding import Generation
from invscale.models import load_model
from invscale.results import ResultsError
from cli_run import one_line, run, write_rows

ROWS = [{"prompt": f"Question: is {number} more than 40?\nAnswer:", "classes": [" yes", " no"],
         "answer_index": int(number <= 40)} for number in (12, 55, 70, 3, 41, 90, 28)]


def reference_class_logprobs(model, tokenizer, record, prompt, classes, cot: ChainOfThought):
    """Each class's log-prob from one plain forward of prompt + cue, the chain's ids, answer cue + class."""
    context = tokenizer(prompt + cot.reasoning_cue)["input_ids"]
    chain = record["chain_token_ids"]
    text = tokenizer.decode(chain, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    cue = cot.answer_cue.lstrip() if text[-1:].isspace() else cot.answer_cue
    found = []
    for name in classes:
        tail = tokenizer(cue + name, add_special_tokens=False)["input_ids"]
        own = min(len(tokenizer(name, add_special_tokens=False)["input_ids"]), len(tail))
        ids = torch.tensor([context + chain + tail])
        with torch.no_grad():
            logprobs = model(input_ids=ids).logits[0].float().log_softmax(-1)
        targets = ids[0, -own:]
        found.append(float(logprobs[-own - 1:-1].gather(1, targets[:, None]).sum()))
    return found


@pytest.mark.parametrize("name,path", [("llama-gqa2", "trie"), ("opt-plain", "cache")])
def test_classes_after_the_chain_equal_one_plain_forward(checkpoint_dirs, name, path):
    """Every class log-prob after the chain is one plain forward of prompt + chain + cue + class
    (fp32, 1e-4), on the trie and on the cache path; the chain is what the decoder wrote."""
    cot = ChainOfThought(reasoning_tokens=12)
    results = api.Scorer(checkpoint_dirs[name], progress=False, cot=cot, path=path).score(ROWS)
    loaded = load_model(checkpoint_dirs[name], dtype="float32", device="cpu")
    assert results.path_taken.name == path
    for record, row in zip(results.records, ROWS):
        expected = reference_class_logprobs(loaded.model, loaded.tokenizer, record, row["prompt"], row["classes"], cot)
        assert record["class_logprobs"] == pytest.approx(expected, abs=1e-4)
        assert 0 < record["chain_tokens"] == len(record["chain_token_ids"]) <= 12
        assert record["chain_stop"] in ("eos", "stop", "budget")
        assert record["chain"] == loaded.tokenizer.decode(record["chain_token_ids"], skip_special_tokens=False,
                                                          clean_up_tokenization_spaces=False)


def test_a_written_cue_is_cut_and_its_answer_read(checkpoint_dirs):
    """A chain whose text holds the answer cue is cut before it (the cue appended as for any chain)
    and the class its text names after the cue is read."""
    loaded = load_model(checkpoint_dirs["opt-plain"], dtype="float32", device="cpu")
    tokenizer = loaded.tokenizer
    dataset = api.as_dataset(ROWS)
    job = ChainJob(loaded.model, tokenizer, dataset, ChainOfThought(reasoning_tokens=30))
    text = " 55 is more than 40. So the answer is (yes). And"
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    chain = job._read_chain(dataset.rows[1], Generation(tuple(tokens), text, "budget", None, len(tokens)))
    assert chain.wrote_cue and chain.text == " 55 is more than 40." and dataset.rows[1].classes[chain.named] == " yes"
    plain = job._read_chain(dataset.rows[1], Generation(tuple(tokens[:4]), tokenizer.decode(tokens[:4]), "eos", None, 5))
    assert not plain.wrote_cue and plain.named is None and plain.tokens == tuple(tokens[:4])


@pytest.mark.parametrize("text,classes,expected", [
    (" (B).", (" A", " B", " C"), 1), (" yes, because", (" yes", " no"), 0), (" Yesterday", (" yes", " no"), None),
    ("  no.", (" yes", " no"), 1), (" 12 apples", (" 1", " 12"), 1), (" maybe", (" yes", " no"), None),
    ("", (" A", " B"), None), (" 'A'", (" A", " B"), 0)])
def test_the_class_a_text_names(text, classes, expected):
    assert named_class(text, classes) == expected


def test_chains_resume_and_refuse_other_settings(checkpoint_dirs, tmp_path):
    """A stopped run resumes to the same bytes; the same file with another budget is refused."""
    cot = ChainOfThought(reasoning_tokens=6)
    scorer = api.Scorer(checkpoint_dirs["llama-gqa2"], progress=False, cot=cot)
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    scorer.score(ROWS, out=whole)
    part.write_text("".join(whole.read_text().splitlines(keepends=True)[:3]))
    (tmp_path / "part.jsonl.meta.json").write_text((tmp_path / "whole.jsonl.meta.json").read_text())
    scorer.score(ROWS, out=part)
    assert part.read_bytes() == whole.read_bytes()
    meta = json.loads((tmp_path / "whole.jsonl.meta.json").read_text())
    assert meta["chain_of_thought"]["reasoning_tokens"] == 6 and meta["chain_of_thought"]["answer_cue"] == ANSWER_CUE
    other = api.Scorer(checkpoint_dirs["llama-gqa2"], progress=False, cot=ChainOfThought(reasoning_tokens=7))
    with pytest.raises(ResultsError, match="chain_of_thought"):
        other.score(ROWS, out=whole)


def test_evaluate_budgets_are_variants(checkpoint_dirs, tmp_path):
    """Each reasoning budget is its own variant and row; budget 0 is the plain task."""
    evaluation = api.evaluate(["gambling"], checkpoint_dirs["opt-plain"], n=4, out=tmp_path, progress=False,
                              cot=ChainOfThought(), reasoning_tokens=[0, 5])
    assert [row["reasoning_tokens"] for row in evaluation.rows] == [0, 5]
    assert "mean_chain_tokens" not in evaluation.rows[0] and 0 < evaluation.rows[1]["mean_chain_tokens"] <= 5
    plain = [json.loads(line) for line in (tmp_path / "gambling-cot0.results.jsonl").read_text().splitlines()]
    chained = [json.loads(line) for line in (tmp_path / "gambling-cot5.results.jsonl").read_text().splitlines()]
    assert "chain" not in plain[0] and "chain" in chained[0] and len(plain) == len(chained) == 4
    assert (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")[2] == "reasoning_tokens"


def test_cli_cot_summary_and_refusals(checkpoint_dirs, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    model = checkpoint_dirs["opt-plain"]
    done = run("score", data, "--model", model, "--cot", "--reasoning-tokens", "4", "--reasoning-stop", "\\n",
               "--out", tmp_path / "r.jsonl")
    assert done.exit_code == 0, done.output
    assert "chains" in done.output and "cut there, then the answer cue follows" in one_line(done)
    sequence = write_rows(tmp_path / "seq.jsonl", [{"prompt": "a b", "completion": " c"}])
    for args, message in [([sequence, "--cot"], "sequence_prob task"),
                          ([data, "--cot", "--reasoning-tokens", "-3"], "--reasoning-tokens"),
                          ([data, "--cot", "--reasoning-stop", ""], "empty stop string"),
                          ([data, "--reasoning-tokens", "8"], "give --cot too"),
                          ([data, "--cot", "--reasoning-tokens", "4,8"], "score takes one budget")]:
        failed = run("score", *args, "--model", model, "--out", tmp_path / "x.jsonl")
        assert failed.exit_code == 2 and message in one_line(failed), failed.output
        assert "Traceback" not in failed.output
        assert not (tmp_path / "x.jsonl").exists()


def test_rows_too_long_for_a_chain_are_refused_or_skipped(checkpoint_dirs):
    """A budget that takes a row past the model's 2048 positions: every such row named in one line
    before any chain (--too-long error), or recorded as skipped."""
    long_rows = [ROWS[0], {**ROWS[1], "prompt": "word " * 1900 + ROWS[1]["prompt"]}, ROWS[2]]
    cot = ChainOfThought(reasoning_tokens=200)
    with pytest.raises(DataError, match=r"row 2: field 'prompt': context \+ continuation is up to \d+ tokens"):
        api.Scorer(checkpoint_dirs["opt-plain"], progress=False, cot=cot).score(long_rows)
    results = api.Scorer(checkpoint_dirs["opt-plain"], progress=False, cot=cot, too_long="skip").score(long_rows)
    assert ["skipped" in record for record in results.records] == [False, True, False]
    assert results.summary["skipped"] == 1 and results.summary["n"] == 2
