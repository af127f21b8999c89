"""Rows longer than the model takes: every one named at once (the default), skipped and recorded,
or truncated from the left and scored exactly on what is left."""

import json

import pytest
import torch
from typer.testing import CliRunner

from invscale.cli import app
from invscale.data import TaskType
from invscale.models import load_model
from invscale.results import read_results
from invscale.scoring.metrics import RESULT_COLUMNS
from invscale.scoring.scorer import ScoringJob
from random_data import as_dataset, random_classification
from reference import isclose

runner = CliRunner()
POSITIONS = 160


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    """A tiny OPT that takes 160 positions, loaded as a user would."""
    from invscale.tiny import build_tiny_opt

    return load_model(str(build_tiny_opt(tmp_path_factory.mktemp("short") / "opt", seed=5,
                                         max_position_embeddings=POSITIONS)), device="cpu")


def records_with_long_rows():
    records = random_classification(71, n_rows=8, duplicates=False)
    records[2]["prompt"] = "long words here " * 40 + records[2]["prompt"]
    records[5]["prompt"] = "older text " * 70 + records[5]["prompt"]
    return records


def invoke(model, data, out, *options):
    return runner.invoke(app, ["score", str(data), "--model", model, "--device", "cpu", "--out", str(out), *options])


def test_the_default_names_every_long_row_in_one_line_and_writes_nothing(short_model, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records_with_long_rows()))
    result = invoke(short_model.name, data, tmp_path / "out.jsonl")
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "rows 3, 6: field 'prompt'" in message and f"more than the model's {POSITIONS} positions" in message
    assert not (tmp_path / "out.jsonl").exists()
    bad = invoke(short_model.name, data, tmp_path / "out.jsonl", "--too-long", "cut")
    assert bad.exit_code == 2 and "--too-long cut: choose one of error, skip, truncate-left" in " ".join(bad.output.split())


def test_skip_scores_the_rest_and_records_the_skipped_rows(short_model, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records_with_long_rows()))
    out = tmp_path / "out.csv"
    result = invoke(short_model.name, data, out, "--too-long", "skip")
    assert result.exit_code == 0, result.output
    results = {r["index"]: r for r in read_results(out)}
    assert set(results) == set(range(8))
    assert set(results[2]) == {"index", "skipped"} and f"more than the model's {POSITIONS} positions" in results[5]["skipped"]
    assert all("loss" in results[i] for i in range(8) if i not in (2, 5))
    text = " ".join(result.output.replace("│", " ").split())
    assert "skipped 2 (too long for the model)" in text and "examples 6" in text
    header = out.read_text().splitlines()[0].split(",")
    assert header[len(RESULT_COLUMNS[TaskType.classification])] == "skipped"  # right after the metrics
    again = invoke(short_model.name, data, out, "--too-long", "skip")  # finished: nothing left to score
    assert again.exit_code == 0 and "resuming: 8 of 8" in " ".join(again.output.split())
    other = invoke(short_model.name, data, out, "--too-long", "truncate-left")
    assert other.exit_code == 2 and "too_long" in other.output  # another choice: another run's results


def test_truncate_left_scores_what_fits_exactly_and_the_rest_as_before(short_model):
    """Truncated rows equal a plain forward pass over each sequence's last 160 tokens; the other rows
    are what a run without the long rows gives."""
    records = records_with_long_rows()
    job = ScoringJob(short_model.model, short_model.tokenizer, as_dataset(records), too_long="truncate-left")
    assert job.too_long_rows == 2
    results = {r["index"]: r for r in job.results()}
    tokenizer, model = short_model.tokenizer, short_model.model
    for index in (2, 5):
        record = records[index]
        expected = []
        for option in record["classes"]:
            ids = tokenizer(record["prompt"] + option)["input_ids"]
            target = len(tokenizer(option, add_special_tokens=False)["input_ids"])
            kept = ids[-POSITIONS:]
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([kept])).logits[0].float(), dim=-1)
            expected.append(sum(logprobs[i - 1, kept[i]].item() for i in range(len(kept) - target, len(kept))))
            assert len(ids) > POSITIONS
        assert all(isclose(a, b) for a, b in zip(results[index]["class_logprobs"], expected))
        assert results[index]["truncated"].endswith("oldest prompt tokens dropped")
    short = [r for i, r in enumerate(records) if i not in (2, 5)]
    plain = {r["index"]: r for r in ScoringJob(model, tokenizer, as_dataset(short)).results()}
    for position, index in enumerate(i for i in range(8) if i not in (2, 5)):
        assert all(isclose(a, b) for a, b in zip(results[index]["class_logprobs"], plain[position]["class_logprobs"]))
