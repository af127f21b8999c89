"""Hugging Face datasets as DATA: a folder of data files with splits, a folder saved by
save_to_disk, a hub id (offline here: one clear line), each scored as the same rows in a file are."""

import json

import pytest

from invscale.results import read_results
from cli_run import one_line, run, write_rows
from random_data import random_classification

datasets = pytest.importorskip("datasets", reason="the datasets package is not installed")


@pytest.fixture
def rows():
    return random_classification(98, n_rows=10, duplicates=False)


def _logprobs(path):
    return [(r["index"], r["class_logprobs"]) for r in sorted(read_results(path), key=lambda r: r["index"])]


def test_a_dataset_folder_with_splits_scores_as_its_file_does(checkpoint_dirs, rows, tmp_path):
    model = checkpoint_dirs["opt-plain"]
    folder = tmp_path / "prize_ds"
    folder.mkdir()
    datasets.Dataset.from_list(rows).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    datasets.Dataset.from_list(random_classification(99, n_rows=4)).to_parquet(
        str(folder / "train-00000-of-00001.parquet"))
    several = run("score", folder, "--model", model, "--out", tmp_path / "o.jsonl")
    assert several.exit_code == 2 and "several splits; choose one with --split: " in one_line(several)
    assert run("score", folder, "--split", "test", "--model", model, "--out", tmp_path / "hf.jsonl").exit_code == 0
    assert run("score", write_rows(tmp_path / "d.jsonl", rows), "--model", model,
               "--out", tmp_path / "file.jsonl").exit_code == 0
    assert _logprobs(tmp_path / "hf.jsonl") == _logprobs(tmp_path / "file.jsonl")
    assert len(json.loads((tmp_path / "hf.jsonl.meta.json").read_text())["data_sha256"]) == 64  # the rows' content
    wrong = run("score", folder, "--split", "validation", "--model", model, "--out", tmp_path / "v.jsonl")
    assert wrong.exit_code == 2 and "no split 'validation'" in one_line(wrong)


def test_a_saved_dataset_and_a_sweep_over_it(checkpoint_dirs, rows, tmp_path):
    folder = tmp_path / "saved_prize"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    result = run("sweep", folder, "--models", checkpoint_dirs["opt-plain"], "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "run" / "results").rglob("*.results.jsonl")][0].startswith("saved_prize-")


def test_missing_datasets_and_misplaced_splits_are_one_line(checkpoint_dirs, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    missing = run("score", "inverse-scaling/no-such-task", "--model", checkpoint_dirs["opt-plain"],
                  "--out", tmp_path / "o.jsonl")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "inverse-scaling/no-such-task: cannot load it as a Hugging Face dataset" in one_line(missing)
    on_a_file = run("score", write_rows(tmp_path / "d.jsonl", rows), "--split", "test",
                    "--model", checkpoint_dirs["opt-plain"], "--out", tmp_path / "o.jsonl")
    assert on_a_file.exit_code == 2 and "--split is for Hugging Face datasets" in one_line(on_a_file)
