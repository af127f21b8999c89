"""Results that can be trusted: one writer, content-keyed provenance, a reader that cannot be fooled,
sweeps that record failures per model and dataset, and one-line errors for every bad input."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from invscale.results import ResultsError, ResultsStore, read_results, read_store
from cli_run import one_line, run, write_rows
from random_data import random_classification


@pytest.fixture
def data(tmp_path):
    return write_rows(tmp_path / "data.jsonl", random_classification(41, n_rows=12))


def test_a_second_writer_is_refused_and_the_first_is_unharmed(checkpoint_dirs, data, tmp_path):
    out = tmp_path / "o.jsonl"
    with ResultsStore(out, {"model": "x"}, ["index"]):  # another run holds the lock
        second = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
        assert second.exit_code == 2 and "another invscale run (pid" in one_line(second)
        assert not out.exists()
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0
    assert len(read_results(out)) == 13


def test_repeated_results_are_read_once_and_never_written_twice(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"index": 0, "loss": 1.0}\n{"index": 1, "loss": 2.0}\n{"index": 0, "loss": 9.0}\n')
    results, warnings = read_store(path)
    assert [r["loss"] for r in results] == [1.0, 2.0] and "repeated result(s) for index 0" in warnings[0]
    (tmp_path / "r.jsonl.meta.json").write_text(json.dumps({"model": "m"}))
    with ResultsStore(path, {"model": "m"}, ["index"]) as store:
        store.start()
        store.append([{"index": 1, "loss": 5.0}, {"index": 2, "loss": 3.0}])
        store.append([{"index": 2, "loss": 4.0}])
    assert [(r["index"], r["loss"]) for r in read_results(path)] == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_line_separators_inside_fields_read_back(checkpoint_dirs, tmp_path):
    """U+2028, U+0085 and friends are valid inside JSON strings: input and results keep them."""
    records = random_classification(42, n_rows=4)
    records[1]["tag"] = "a\u2028b\u0085c\u2029d\x1ce"
    records[2]["prompt"] = "Line one\u2028line two? " + records[2]["prompt"]
    data = write_rows(tmp_path / "d.jsonl", records)
    out = tmp_path / "o.jsonl"
    result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert result.exit_code == 0, result.output
    results = {r["index"]: r for r in read_results(out)}
    assert results[1]["tag"] == records[1]["tag"] and len(results) == 5
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0  # resumes


def test_a_torn_last_line_is_recovered_and_a_damaged_middle_line_named(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"index": 0, "loss": 1.0}\n{"index": 1, "lo')
    assert [r["index"] for r in read_store(path)[0]] == [0]
    path.write_text('{"index": 0, "loss": 1.0}\nnot json\n{"index": 2, "loss": 1.0}\n')
    with pytest.raises(ResultsError, match=r"r.jsonl: line 2 is damaged"):
        read_store(path)


def test_resume_checks_the_model_not_its_name(checkpoint_dirs, data, tmp_path):
    """The same --model path holding another checkpoint after an interruption is refused."""
    import shutil

    model = tmp_path / "cur"
    shutil.copytree(checkpoint_dirs["opt-plain"], model)
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", model, "--out", out).exit_code == 0
    shutil.rmtree(model)
    shutil.copytree(checkpoint_dirs["opt-350m-shape"], model)
    other = run("score", data, "--model", model, "--out", out)
    assert other.exit_code == 2 and "holds results made with another model_fingerprint" in one_line(other)


@pytest.mark.parametrize("problem", ["model", "dtype", "row"])
def test_a_run_that_fails_at_start_up_leaves_nothing_behind(checkpoint_dirs, data, tmp_path, problem):
    out = tmp_path / "o.jsonl"
    args = {"model": ["--model", tmp_path / "typo"], "dtype": ["--dtype", "float8"], "row": []}[problem]
    if problem == "row":
        long_rows = random_classification(43, n_rows=2)
        long_rows[1]["prompt"] = "word " * 3000  # longer than the tiny model's 2048 positions
        write_rows(data, long_rows)
    failed = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out, *args)
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"], "no results, meta or lock file"
    if problem != "row":
        assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0


def test_overwrite_keeps_old_results_until_the_new_run_starts(checkpoint_dirs, data, tmp_path):
    out = tmp_path / "o.jsonl"
    assert run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0
    before = out.read_text()
    failed = run("score", data, "--model", tmp_path / "typo", "--out", out, "--overwrite")
    assert failed.exit_code == 2 and out.read_text() == before


@pytest.mark.parametrize("text,fragment", [
    ("prompt,classes,answer_index,prompt\nQ,\"[' A', ' B']\",0,R\n", "header: column 'prompt' appears 2 times"),
    ("prompt,classes,answer_index\nQ,\"[' A', ' B', ' A']\",0\n", "class 2 repeats class 0"),
    ("prompt,classes,answer_index\nQ\x00x,\"[' A', ' B']\",0\n", "field 'prompt': contains a NUL character"),
])
def test_silently_accepted_inputs_are_refused(tmp_path, checkpoint_dirs, text, fragment):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    result = run("score", bad, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and fragment in one_line(result) and "Traceback" not in result.output


def test_repeated_json_key_is_refused(tmp_path, checkpoint_dirs):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Q", "classes": [" A", " B"], "answer_index": 0, "answer_index": 1}\n')
    result = run("score", bad, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and "row 1 (line 1): field 'answer_index' appears twice" in one_line(result)


def test_input_columns_named_like_results_are_kept(checkpoint_dirs, tmp_path):
    records = random_classification(44, n_rows=3)
    for number, record in enumerate(records):
        record["index"], record["loss"] = f"q{number}", "their loss"
    data = write_rows(tmp_path / "d.jsonl", records)
    out = tmp_path / "o.jsonl"
    result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out)
    assert result.exit_code == 0 and "kept in the results as input_index, input_loss" in one_line(result)
    first = read_results(out)[0]
    assert first["index"] == 0 and first["input_index"] == "q0" and first["input_loss"] == "their loss"


@pytest.mark.parametrize("case", ["input", "extension", "directory", "proc"])
def test_bad_out_paths_are_one_line_errors(checkpoint_dirs, data, tmp_path, case):
    out = {"input": data, "extension": tmp_path / "o.txt", "directory": tmp_path, "proc": "/proc/o.jsonl"}[case]
    before = data.read_text()
    result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out, "--overwrite")
    assert result.exit_code == 2 and "Traceback" not in result.output and f"--out {out}" in one_line(result)
    assert data.read_text() == before


def test_logodds_runs_finish_with_a_summary(checkpoint_dirs, tmp_path):
    records = [{"prompt": f"Is {n} even?", "other_prompt": f"Is {n} odd?", "classes": [" yes", " no"],
                "answer_index": n % 2} for n in range(6)]
    data = write_rows(tmp_path / "d.jsonl", records)
    for task_type in ("logodds", "absolute_logodds"):
        result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--task-type", task_type, "--out",
                     tmp_path / f"{task_type}.jsonl")
        assert result.exit_code == 0, result.output
        assert "accuracy" in result.stdout and "acc_norm" not in result.stdout


def test_other_one_line_errors(checkpoint_dirs, data, tmp_path, monkeypatch):
    for device in ("tpu", "mps"):
        result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl",
                     "--device", device)
        assert result.exit_code == 2 and f"--device {device}: choose cpu, cuda, cuda:N or auto" in one_line(result)
    result = run("generate", "gambling", "--n", "3", "--out", tmp_path / "missing" / "x.jsonl")
    assert result.exit_code == 2 and "No such file or directory" in one_line(result)
    result = run("generate", "gambling", "--seed", "-7")
    assert result.exit_code == 2 and "Traceback" not in result.output

    from invscale import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "make_job", interrupted)
    result = run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 130 and "interrupted before scoring began; nothing was written" in one_line(result)
    assert not (tmp_path / "o.jsonl").exists()


def test_a_sweep_records_a_row_too_long_for_one_model_and_goes_on(tmp_path):
    """One model's context is shorter than a row: that cell fails with its reason, the other
    models are scored, the exit code says something failed, and a rerun retries only that cell."""
    from invscale.tiny import build_tiny_opt

    short = build_tiny_opt(tmp_path / "short", seed=1, max_position_embeddings=64)
    roomy = build_tiny_opt(tmp_path / "roomy", seed=2)
    records = random_classification(45, n_rows=4)
    records[2]["prompt"] = "word " * 80
    data = write_rows(tmp_path / "task.jsonl", records)
    out = tmp_path / "run"
    result = run("sweep", data, "--models", f"{short},{roomy}", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    models = {m["name"]: m for m in json.loads((out / "sweep.json").read_text())["models"]}
    assert models[str(short)]["status"] == "failed" and "positions" in models[str(short)]["failures"]["task"]
    assert models[str(roomy)]["status"] == "done"
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts["task"]["kind"] == "insufficient data"


def test_a_sweep_where_every_model_fails_says_so(tmp_path):
    data = write_rows(tmp_path / "task.jsonl", random_classification(46, n_rows=2))
    out = tmp_path / "run"
    result = run("sweep", data, "--models", f"{tmp_path / 'nope1'},{tmp_path / 'nope2'}", "--out", out)
    assert result.exit_code == 1 and "2 of 2 models did not finish" in one_line(result)
    assert json.loads((out / "verdicts.json").read_text())["task"]["kind"] == "no results"


CHAOS_SEED = 7


def _kill_at_random(command, env, rng, attempts, full_run) -> int:
    """Start ``command`` ``attempts`` times, each SIGKILLed at a random moment of its run."""
    kills = 0
    for _ in range(attempts):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * full_run)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    return kills


def _timed(command, env) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def test_chaos_kills_then_resume_give_the_uninterrupted_files(checkpoint_dirs, tmp_path):
    """A score run and a sweep SIGKILLed at random moments (fixed seed, 6 attempts in all), then run
    again until they finish, leave the same bytes as runs never interrupted; a second score run
    started beside a first on the same --out is refused at once and the first is unharmed."""
    data = write_rows(tmp_path / "d.jsonl", random_classification(47, n_rows=80))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    rng = random.Random(CHAOS_SEED)
    cli = [sys.executable, "-m", "invscale.cli"]
    score = cli + ["score", str(data), "--model", checkpoint_dirs["llama-gqa2"], "--device", "cpu",
                   "--max-tokens-per-pack", "60", "--out"]
    full_run = _timed(score + [str(tmp_path / "reference.jsonl")], env)
    out = tmp_path / "out.jsonl"
    kills = _kill_at_random(score + [str(out)], env, rng, 4, full_run)
    first = subprocess.Popen(score + [str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = out.with_name(out.name + ".lock")
    while first.poll() is None and not (lock.exists() and lock.read_text() == f"pid {first.pid}"):
        time.sleep(0.05)  # until the first run holds the results (a killed run leaves a stale, unlocked file)
    second = subprocess.run(score + [str(out)], env=env, capture_output=True, text=True)  # ...the second starts
    assert first.wait() == 0, first.stderr.read()[-2000:]
    if second.returncode != 0:  # the first still held the results when the second started
        assert "another invscale run" in " ".join(second.stderr.split())
    assert out.read_bytes() == (tmp_path / "reference.jsonl").read_bytes()

    sweep = cli + ["sweep", str(data), "--models", f"{checkpoint_dirs['opt-plain']},{checkpoint_dirs['llama-gqa2']}",
                   "--device", "cpu", "--out"]
    full_sweep = _timed(sweep + [str(tmp_path / "reference-run")], env)
    kills += _kill_at_random(sweep + [str(tmp_path / "run")], env, rng, 2, full_sweep)
    subprocess.run(sweep + [str(tmp_path / "run")], env=env, check=True, capture_output=True)
    for reference in sorted((tmp_path / "reference-run" / "results").rglob("*.jsonl")):
        resumed = tmp_path / "run" / reference.relative_to(tmp_path / "reference-run")
        assert resumed.read_bytes() == reference.read_bytes(), resumed
    assert (tmp_path / "run" / "summary.csv").read_text() == (tmp_path / "reference-run" / "summary.csv").read_text()
    assert kills >= 3
