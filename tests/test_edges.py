"""The edges where data, models and people meet invscale: text that is not valid Unicode, broken
model files, interrupts, full disks, logs that are not terminals, narrow tables and typos; each one
clear line, never a traceback."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from invscale.data import read_dataset
from invscale.results import read_results
from cli_run import one_line, run, write_rows
from random_data import random_classification


def refused(result, fragment):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and fragment in one_line(result), one_line(result)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in random_classification(95, n_rows=8)))
    return path


@pytest.mark.parametrize("name, text, fragment", [
    ("prompt.jsonl", '{"prompt": "Q \\ud83d", "classes": [" A", " B"], "answer_index": 0}\n',
     "row 1: field 'prompt': not valid Unicode text: a lone surrogate (U+D83D) at character 3"),
    ("class.jsonl", '{"prompt": "Q", "classes": [" A", "\\udc00"], "answer_index": 0}\n',
     "row 1: field 'classes': class 1: not valid Unicode text: a lone surrogate (U+DC00)"),
    ("extra.jsonl", '{"prompt": "Q", "classes": [" A", " B"], "answer_index": 0, "note": ["\\ud800"]}\n',
     "row 1: field 'note': not valid Unicode text"),
    ("class.csv", "prompt,classes,answer_index\nQ,\"['\\ud83d\\ude00', ' B']\",0\nR,\"['\\ud83d', ' B']\",1\n",
     "row 2: field 'classes': class 0: not valid Unicode text: a lone surrogate (U+D83D)"),
])
def test_text_that_is_not_valid_unicode_is_named(checkpoint_dirs, tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    refused(run("score", path, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl"), fragment)


def test_a_surrogate_pair_in_a_python_list_is_the_character_json_gives(checkpoint_dirs, tmp_path):
    path = tmp_path / "emoji.csv"
    path.write_text("prompt,classes,answer_index\nQ,\"['\\ud83d\\ude00', ' B']\",0\n")
    out = tmp_path / "o.jsonl"
    assert run("score", path, "--model", checkpoint_dirs["opt-plain"], "--out", out).exit_code == 0
    assert len(read_results(out)[0]["class_logprobs"]) == 2
    assert read_dataset(path).rows[0].classes == ("\U0001f600", " B")


def test_standard_input_is_read_as_a_file_is(checkpoint_dirs, tmp_path):
    row = b'{"prompt": "Q", "classes": [" A", " B"], "answer_index": 0}\n'
    with_bom = run("score", "-", "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "bom.jsonl",
                   input=b"\xef\xbb\xbf" + row)
    assert with_bom.exit_code == 0, with_bom.output
    refused(run("score", "-", "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "bad.jsonl",
                input=row + b'{"prompt": "Q\xff"}\n'), "<stdin>: line 2: not UTF-8 text (invalid start byte at byte")


def broken_models(checkpoint, tmp_path):
    """Copies of ``checkpoint`` with a truncated weight file and a config that is not JSON, and GGUF
    files that are random bytes or empty."""
    truncated = tmp_path / "truncated"
    shutil.copytree(checkpoint, truncated)
    weights = truncated / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    bad_config = tmp_path / "bad-config"
    shutil.copytree(checkpoint, bad_config)
    (bad_config / "config.json").write_text("{not json")
    (tmp_path / "random.gguf").write_bytes(os.urandom(1000))
    (tmp_path / "empty.gguf").write_bytes(b"")
    return {"truncated": (truncated, "cannot load the checkpoint in"),
            "bad-config": (bad_config, "is not a valid JSON file"),
            "random": (tmp_path / "random.gguf", "not a readable GGUF file"),
            "empty": (tmp_path / "empty.gguf", "not a readable GGUF file")}


def test_broken_model_files_are_one_line_each(checkpoint_dirs, data, tmp_path):
    for name, (model, fragment) in broken_models(checkpoint_dirs["opt-plain"], tmp_path).items():
        refused(run("score", data, "--model", model, "--out", tmp_path / f"{name}.jsonl"), fragment)
        assert not (tmp_path / f"{name}.jsonl").exists()


def test_a_broken_member_of_a_sweep_is_recorded_and_the_sweep_goes_on(checkpoint_dirs, data, tmp_path):
    truncated, _ = broken_models(checkpoint_dirs["opt-plain"], tmp_path)["truncated"]
    result = run("sweep", data, "--models", f"{truncated},{checkpoint_dirs['opt-plain']}", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    models = {m["name"]: m for m in json.loads((tmp_path / "run" / "sweep.json").read_text())["models"]}
    assert models[str(truncated)]["status"] == "failed" and "cannot load" in models[str(truncated)]["reason"]
    assert models[checkpoint_dirs["opt-plain"]]["status"] == "done"


def test_a_mistyped_built_in_name_says_what_was_meant(data, tmp_path):
    began = time.perf_counter()
    refused(run("score", data, "--model", "smollm2", "--out", tmp_path / "o.jsonl"), "did you mean smollm2-135m?")
    assert time.perf_counter() - began < 30  # no rounds of asking the hub


def test_chat_template_is_refused_before_the_model_loads(checkpoint_dirs, data, tmp_path, monkeypatch):
    from invscale import api

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(api, "load_for_scoring", no_loading)
    refused(run("score", data, "--model", checkpoint_dirs["opt-plain"], "--chat-template", "--out", tmp_path / "o.jsonl"),
            "the model's tokenizer has no chat template")
    refused(run("evaluate", "--tasks", "decoy", "--n", "5", "--model", checkpoint_dirs["opt-plain"], "--chat-template",
                "--out", tmp_path / "ev"), "the model's tokenizer has no chat template")


def test_a_full_disk_names_the_file_and_leaves_no_staging_file(checkpoint_dirs, data, tmp_path, monkeypatch):
    from invscale import results

    def full(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "replace", full)
    out = tmp_path / "o.jsonl"
    refused(run("score", data, "--model", checkpoint_dirs["opt-plain"], "--out", out),
            f"{out}.meta.json: cannot write: No space left on device")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_log_gets_progress_lines_as_the_run_goes(checkpoint_dirs, tmp_path, monkeypatch):
    from invscale import progress

    monkeypatch.setattr(progress, "LINE_FRACTION", 0.25)
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in random_classification(96, n_rows=60)))
    result = run("score", path, "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl",
                 "--max-tokens-per-pack", "64")
    assert result.exit_code == 0, result.output
    rows = len(path.read_text().splitlines())
    lines = [line for line in result.output.splitlines() if line.startswith("scoring: ")]
    assert lines[0] == f"scoring: 0/{rows} items (0%)" and lines[-1].startswith(f"scoring: {rows}/{rows} items (100%)")
    assert len(lines) >= 4 and all(" left" in line for line in lines[1:-1])
    assert "tokens/s" in lines[-1]


def test_generate_reports_progress_for_many_rows(monkeypatch):
    from invscale import cli
    from invscale.generators import base

    monkeypatch.setattr(cli, "GENERATE_PROGRESS_ROWS", 50)
    monkeypatch.setattr(base, "DRAWN_REPORT_EVERY", 10)
    result = run("generate", "gambling", "--n", "60")
    lines = [line for line in result.stderr.splitlines() if line.startswith("generating gambling: ")]
    assert lines[0] == "generating gambling: 0/60 rows (0%)" and lines[-1].startswith("generating gambling: 60/60")
    assert len(lines) >= 5 and len(result.stdout.splitlines()) == 60


def test_tables_keep_their_intervals_whole_in_80_columns(checkpoint_dirs, tmp_path):
    result = run("evaluate", "--tasks", "decoy", "--n", "10", "--shots", "0", "--model", checkpoint_dirs["opt-plain"],
                 "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    intervals = re.findall(r"\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)", result.stdout)
    assert len(intervals) == 2 and "…" not in result.stdout


def test_messages_keep_their_brackets(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if lm-eval were not installed
    result = run("lm-eval", "--help")
    assert result.exit_code == 2 and "pip install -e '.[lm-eval]'" in one_line(result)


def test_lm_eval_with_a_missing_model_is_one_line(tmp_path):
    pytest.importorskip("lm_eval")
    result = run("lm-eval", "--model", "invscale", "--model_args", f"pretrained={tmp_path / 'nope'}",
                 "--tasks", "arc_easy", "--device", "cpu")
    refused(result, f"cannot load pretrained={tmp_path / 'nope'}")


def test_an_interrupt_while_starting_is_one_line():
    job = subprocess.Popen([sys.executable, "-m", "invscale", "generate", "--list"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # inside the imports of torch and transformers
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 130 and "Traceback" not in stderr
    assert stderr.strip() == "error: interrupted while starting; nothing was done"


def test_an_interrupted_benchmark_says_so(monkeypatch):
    from invscale.benchmark import run as benchmark_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark_run, "run_benchmark", interrupted)
    result = run("bench", "--device", "cpu", "--items", "4")
    assert result.exit_code == 130 and "interrupted: the benchmark stopped before its figures were complete" in one_line(result)
