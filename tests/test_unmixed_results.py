"""Results that cannot be mixed: provenance with every option (defaults too) compared both ways,
resume that checks indexes against the data, fingerprints of every weight byte, collision-free sweep
folders, and evaluate and sweep runs that keep what they hold or refuse."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from invscale.models import fingerprint
from invscale.results import read_results
from cli_run import one_line, run, write_rows
from random_data import random_classification
from test_chat_template import instruct_copy


@pytest.fixture
def data(tmp_path):
    return write_rows(tmp_path / "d.jsonl", random_classification(91, n_rows=12))


def kill_after(command: list[str], store, results: int) -> None:
    """Run ``command`` in a process of its own and SIGKILL it once ``store`` holds ``results`` lines."""
    job = subprocess.Popen(command, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while job.poll() is None and time.monotonic() < deadline:
        if store.exists() and store.read_text().count("\n") >= results:
            job.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    job.wait(timeout=60)


def test_resume_without_the_chat_template_is_refused(checkpoint_dirs, tmp_path):
    model_dir, _ = instruct_copy(checkpoint_dirs["opt-plain"], tmp_path / "instruct")
    data = write_rows(tmp_path / "d.jsonl", random_classification(92, n_rows=400))
    out = tmp_path / "o.jsonl"
    kill_after([sys.executable, "-m", "invscale", "score", str(data), "--model", str(model_dir), "--out", str(out),
                "--chat-template", "--max-tokens-per-pack", "64"], out, 4)
    assert 4 <= len(read_results(out)) < 400
    plain = run("score", data, "--model", model_dir, "--out", out)
    assert plain.exit_code == 2
    assert "holds results made with another chat_template (chat_template: 'applied' there, 'none' now)" in one_line(plain)


def test_a_non_default_option_is_not_forgotten_by_a_run_with_the_default(checkpoint_dirs, data, tmp_path):
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out, "--too-long", "skip").exit_code == 0
    default = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert default.exit_code == 2 and "another too_long (too_long: 'skip' there, 'error' now)" in one_line(default)
    assert json.loads((tmp_path / "o.jsonl.meta.json").read_text())["too_long"] == "skip"


def test_a_store_written_without_a_key_is_refused_not_assumed(checkpoint_dirs, data, tmp_path):
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0
    meta = tmp_path / "o.jsonl.meta.json"
    recorded = json.loads(meta.read_text())
    del recorded["too_long"]  # as an older invscale wrote it: the default left out
    meta.write_text(json.dumps(recorded))
    again = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert again.exit_code == 2 and "older invscale that did not record too_long" in one_line(again)
    recorded["surprise"] = 1  # a key this run does not know: compared the other way too
    recorded["too_long"] = "error"
    meta.write_text(json.dumps(recorded))
    other = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert other.exit_code == 2 and "another surprise" in one_line(other)


@pytest.mark.parametrize("index", [999, -3])
def test_resume_checks_the_indexes_against_the_data(checkpoint_dirs, data, tmp_path, index):
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0
    lines = out.read_text().splitlines()
    last = len(data.read_text().splitlines()) - 1
    edited = json.loads(lines[7])
    edited["index"] = index
    lines[7] = json.dumps(edited)
    out.write_text("\n".join(lines) + "\n")
    again = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert again.exit_code == 2
    assert f"damaged: holds a result for index {index}, which is not a row of the data (indexes 0 to {last})" in one_line(again)


def test_an_edit_inside_the_weights_changes_the_fingerprint(checkpoint_dirs, data, tmp_path, monkeypatch):
    monkeypatch.setenv("INVSCALE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m"
    shutil.copytree(checkpoint_dirs["opt-plain"], model)
    weights = model / "model.safetensors"
    before = fingerprint(str(model))
    assert fingerprint(str(model)) == before  # the second time from the cache
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:  # neither the first nor the last bytes, size unchanged
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 1]))
    after = fingerprint(str(model))
    assert after["model_fingerprint"] != before["model_fingerprint"]
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns - 10**9))  # mtime set back
    assert fingerprint(str(model)) == after


def test_an_edit_inside_the_weights_is_not_mixed_with_old_results(checkpoint_dirs, data, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(checkpoint_dirs["opt-plain"], model)
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", model, "--out", out).exit_code == 0
    weights = model / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        handle.write(b"\x00\x00")
    again = run("score", data, "--model", model, "--out", out)
    assert again.exit_code == 2 and "another model_fingerprint" in one_line(again)


def sweep(out, *items, models, extra=()):
    return run("sweep", *items, "--models", models, "--out", out, "--n", "12", "--device", "cpu", *extra)


def test_two_models_whose_names_escape_alike_keep_their_own_results(checkpoint_dirs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    shutil.copytree(checkpoint_dirs["opt-plain"], tmp_path / "x" / "m")
    shutil.copytree(checkpoint_dirs["opt-350m-shape"], tmp_path / "x_m")
    result = sweep("run", "decoy", models="./x/m,./x_m")
    assert result.exit_code == 0, result.output
    assert "already scored" not in result.output
    folders = sorted(p.name for p in (tmp_path / "run" / "results").iterdir())
    assert len(folders) == 2 and folders[0].split("--")[0] != folders[1].split("--")[0]
    rows = list((tmp_path / "run" / "summary.csv").read_text().splitlines())
    assert len(rows) == 3 and rows[1].split(",")[4] != rows[2].split(",")[4]  # each its own params


def test_a_sweep_with_the_chat_template_does_not_reuse_plain_results(checkpoint_dirs, tmp_path):
    model_dir, _ = instruct_copy(checkpoint_dirs["opt-plain"], tmp_path / "instruct")
    assert sweep(tmp_path / "run", "decoy", models=model_dir).exit_code == 0
    chat = sweep(tmp_path / "run", "decoy", models=model_dir, extra=["--chat-template"])
    assert chat.exit_code == 2 and "was swept with --dtype float32; a run folder holds one setting" in one_line(chat)
    elsewhere = sweep(tmp_path / "chat", "decoy", models=model_dir, extra=["--chat-template"])
    assert elsewhere.exit_code == 0 and "already scored" not in elsewhere.output
    assert next((tmp_path / "chat" / "results").iterdir()).name.endswith("--float32--chat-template")


def test_a_hidden_data_file_names_its_task(checkpoint_dirs, tmp_path):
    data = write_rows(tmp_path / ".hidden.jsonl", random_classification(93, n_rows=6))
    result = sweep(tmp_path / "run", data, models=checkpoint_dirs["opt-plain"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "plots" / "hidden.png").exists()
    assert [p.name.split("-")[0] for p in (tmp_path / "run" / "results").rglob("*.results.jsonl")] == ["hidden"]


def test_a_sweep_rerun_with_fewer_members_keeps_the_others(checkpoint_dirs, tmp_path):
    out = tmp_path / "run"
    both = f"{checkpoint_dirs['opt-plain']},{checkpoint_dirs['opt-350m-shape']}"
    assert sweep(out, "decoy", "gambling", models=both).exit_code == 0
    data_before = (out / "data" / "decoy.jsonl").read_bytes()
    fewer = sweep(out, "decoy", models=checkpoint_dirs["opt-plain"])
    assert fewer.exit_code == 0 and "keeping 1 model(s) of earlier runs" in one_line(fewer)
    summary = (out / "summary.csv").read_text()
    assert summary.count("decoy") == 2 and summary.count("gambling") == 2
    other_rows = sweep(out, "decoy", models=checkpoint_dirs["opt-plain"], extra=["--seeds", "1"])
    assert other_rows.exit_code == 2 and "already holds results for task 'decoy' on other rows" in one_line(other_rows)
    assert (out / "data" / "decoy.jsonl").read_bytes() == data_before
    assert (out / "summary.csv").read_text() == summary


def test_sweep_out_naming_a_file_is_one_line(checkpoint_dirs, tmp_path):
    (tmp_path / "run").write_text("")
    result = sweep(tmp_path / "run", "decoy", models=checkpoint_dirs["opt-plain"])
    assert result.exit_code == 2 and "is a file; name a folder for the run" in one_line(result)


def evaluate(out, *extra):
    return run("evaluate", "--model", "tiny-opt", "--tasks", "decoy", "--out", out, *extra)


def test_evaluate_refuses_other_rows_and_keeps_the_data_of_its_results(tmp_path):
    out = tmp_path / "ev"
    assert evaluate(out, "--n", "20").exit_code == 0
    data = (out / "decoy.jsonl").read_bytes()
    meta = json.loads((out / "decoy.results.jsonl.meta.json").read_text())
    assert len(meta["data_sha256"]) == 64
    for other in (["--n", "20", "--seed", "1"], ["--n", "10"]):
        again = evaluate(out, *other)
        assert again.exit_code == 2 and "holds results made with another data_sha256" in one_line(again)
        assert (out / "decoy.jsonl").read_bytes() == data


def test_a_resumed_evaluate_reports_the_seconds_scoring_took(tmp_path):
    out = tmp_path / "ev"
    assert evaluate(out, "--n", "20").exit_code == 0
    first = (out / "summary.csv").read_text().splitlines()[1].split(",")[-1]
    assert evaluate(out, "--n", "20").exit_code == 0
    assert (out / "summary.csv").read_text().splitlines()[1].split(",")[-1] == first
    assert float(first) == json.loads((out / "decoy.results.jsonl.meta.json").read_text())["scoring_seconds"] > 0
