"""The prize pipeline's numeric task type: its parser and anchoring loss on edge strings, greedy
estimates against a plain generate loop, sampled estimates independent of batch layout, the
anchoring generator, and bad input refused in one line."""

import json
import math

import pytest
import torch

from invscale import api
from invscale.data import DataError, TaskType
from invscale.generators import generate
from invscale.models import load_model
from invscale.numeric import NumericSampling, anchoring_loss, estimate, parse_number
from invscale.results import ResultsError
from cli_run import one_line, run, write_rows


def prize_prep_string(s: str) -> str:
    """The prize pipeline's numeric parser's preparation, as its numeric_parser.py writes it."""
    return s.strip().replace(",", "").replace(")", "").replace("(", "").rstrip(".")


def prize_parse(s: str):
    try:
        return float(prize_prep_string(s))
    except ValueError:
        return None


@pytest.mark.parametrize("text", [" 1,234", "(42)", "7.", " 3.5\n", "", "N/A", "-12", "0.25", "1,000,000.",
                                  "12 apples", " (1,5)", "..", "-", "1e3", " 9..", "+4", "2.50."])
def test_parser_is_the_prize_pipelines(text):
    got, want = parse_number(text), prize_parse(text)
    assert got == want or (got is not None and want is not None and math.isnan(got) and math.isnan(want))


def test_parser_table():
    assert [parse_number(t) for t in (" 1,234", "(42)", "7.", "", "N/A", "-12", "0.25", "12 apples")] == \
        [1234.0, 42.0, 7.0, None, None, -12.0, 0.25, None]


def test_anchoring_loss_and_estimate():
    assert anchoring_loss(100.0, 50.0, 150.0) == pytest.approx(0.5)
    assert anchoring_loss(100.0, 100.0, 100.0) == 0.0
    assert anchoring_loss(None, 1.0, 2.0) is None and anchoring_loss(0.0, 1.0, 2.0) is None
    assert estimate([1.0, None, 3.0]) == 2.0 and estimate([None, None]) is None


ROWS = [{"prompt": f"Q: How many legs do {n} spiders have?\nA: The answer is", "true_answer": 8 * n, "anchor": a}
        for n in (3, 7) for a in (8 * n, 4 * n, 12 * n)]


def test_greedy_estimates_equal_a_plain_generate_loop(checkpoint_dirs):
    """At temperature 0 each row's one sample is what a plain greedy loop writes, cut at its first newline."""
    checkpoint = checkpoint_dirs["llama-gqa2"]
    results = api.Scorer(checkpoint, progress=False, sampling=NumericSampling(temperature=0)).score(ROWS)
    loaded = load_model(checkpoint, dtype="float32", device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    for record, row in zip(results.records, ROWS):
        ids = tokenizer(row["prompt"])["input_ids"]
        written = []
        for _ in range(7):
            with torch.no_grad():
                token = int(model(input_ids=torch.tensor([ids + written])).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            written.append(token)
        text = tokenizer.decode(written).split("\n")[0]
        assert record["samples"] == [text]
        assert record["parsed"] == [prize_parse(text)] and record["estimate"] == prize_parse(text)
    assert results.dataset.task_type is TaskType.numeric


def test_sampled_estimates_do_not_depend_on_blocks_and_resume(checkpoint_dirs, tmp_path):
    """Ten samples per row at temperature 0.5; a resumed run writes the same bytes; the loss of a
    triple is on its three rows; other sampling settings on the same file are refused."""
    checkpoint = checkpoint_dirs["opt-plain"]
    scorer = api.Scorer(checkpoint, progress=False)
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    results = scorer.score(ROWS, out=whole)
    assert all(len(r["samples"]) == 10 and len(r["parsed"]) == 10 for r in results.records)
    assert len({tuple(r["samples"]) for r in results.records}) > 1
    for first in (0, 3):
        triple = results.records[first:first + 3]
        assert len({json.dumps(r["loss"]) for r in triple}) == 1
        assert triple[0]["loss"] == anchoring_loss(*(r["estimate"] for r in triple))
    part.write_text("".join(whole.read_text().splitlines(keepends=True)[:4]))
    (tmp_path / "part.jsonl.meta.json").write_text((tmp_path / "whole.jsonl.meta.json").read_text())
    scorer.score(ROWS, out=part)
    assert part.read_bytes() == whole.read_bytes()
    assert json.loads((tmp_path / "whole.jsonl.meta.json").read_text())["sampling"]["samples"] == 10
    with pytest.raises(ResultsError, match="sampling"):
        api.Scorer(checkpoint, progress=False, sampling=NumericSampling(seed=3)).score(ROWS, out=whole)


def test_anchoring_generator_writes_prize_triples():
    dataset, generated = generate("anchoring", 30, seed=4)
    assert dataset.task_type is TaskType.numeric and len(dataset.rows) == 30
    for first in range(0, 30, 3):
        control, low, high = dataset.rows[first:first + 3]
        assert [r.extra["role"] for r in (control, low, high)] == ["control", "low", "high"]
        value = control.true_answer
        assert control.anchor == value and low.anchor == int(value * 0.5) and high.anchor == int(value * 1.5)
        assert "greater than" in low.prompt and "less than" in high.prompt and "than" not in control.prompt[
            len(generated.preface):]
        count, unit = control.extra["count"], value / control.extra["count"]
        assert unit == int(unit) and str(count) in control.prompt
    with pytest.raises(ValueError, match="multiple of 3"):
        generate("anchoring", 10, seed=4)


@pytest.mark.parametrize("rows,message", [
    ([{**ROWS[0], "true_answer": "many"}, *ROWS[1:3]], "row 1: field 'true_answer': expected a number"),
    ([ROWS[0], {**ROWS[1], "anchor": None}, ROWS[2]], "row 2: field 'anchor': expected a number"),
    (ROWS[:4], "not a whole number of triples"),
    ([ROWS[0], ROWS[1], {**ROWS[2], "true_answer": 5}], "row 3: field 'true_answer'"),
    ([ROWS[0], ROWS[2], ROWS[1]], "row 3: field 'anchor': the high anchor")])
def test_bad_numeric_rows_are_one_line(rows, message, tmp_path):
    path = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message.replace("(", r"\(")) as raised:
        api.as_dataset(str(path))
    assert "\n" not in str(raised.value)


def test_cli_numeric_summary_and_refusals(checkpoint_dirs, tmp_path):
    data = write_rows(tmp_path / "anchoring.jsonl", ROWS)
    model = checkpoint_dirs["opt-plain"]
    done = run("score", data, "--model", model, "--samples", 3, "--out", tmp_path / "r.jsonl")
    assert done.exit_code == 0, done.output
    assert "3 sample(s) per row at temperature 0.5" in one_line(done)
    classes = write_rows(tmp_path / "c.jsonl", [{"prompt": "a", "classes": [" b", " c"], "answer_index": 0}])
    for args, message in [([data, "--cot"], "numeric task"), ([classes, "--samples", 3], "are for numeric rows"),
                          ([data, "--temperature", -1], "temperature"), ([data, "--samples", 0], "samples")]:
        failed = run("score", *args, "--model", model, "--out", tmp_path / "x.jsonl")
        assert failed.exit_code == 2 and message in one_line(failed), failed.output
        assert not (tmp_path / "x.jsonl").exists()
