"""Studies through training: checkpoints named by revision or by step folder, swept together, each
model's trend against its training steps with the size trend's bootstrap, and hub revisions read
from the local cache."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from invscale.study.checkpoints import at_revisions, lineage, training_step
from invscale.study.family import family_members, member_at
from cli_run import one_line, run, write_rows
from random_data import random_classification


def test_checkpoint_names_give_their_model_and_step(tmp_path):
    assert training_step("EleutherAI/pythia-410m@step3000") == 3000
    assert lineage("EleutherAI/pythia-410m@step3000") == "EleutherAI/pythia-410m"
    assert (training_step("runs/ckpt/step-1000"), lineage("runs/ckpt/step-1000")) == (1000, "runs/ckpt")
    assert (training_step("out/checkpoint-2000/"), lineage("out/checkpoint-2000/")) == (2000, "out")
    assert (training_step("facebook/opt-125m"), lineage("facebook/opt-125m")) == (None, "facebook/opt-125m")
    assert training_step("org/model@main") is None
    odd = tmp_path / "a@b"
    odd.mkdir()
    assert lineage(str(odd)) == str(odd)  # a local path is never split at "@"
    assert at_revisions(["m1", "m2"], ["step1", "step2"]) == ["m1@step1", "m1@step2", "m2@step1", "m2@step2"]
    pythia = family_members("pythia")[2]
    at = member_at(pythia, "pythia", "step3000")
    assert at.model == "EleutherAI/pythia-410m@step3000" and at.training_tokens == 3000 * 2_097_152
    assert member_at(family_members("opt")[0], "opt", "step10").training_tokens is None


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny models of different sizes, each saved at steps 0, 1000 and 2000 (random weights)."""
    from invscale.tiny import build_tiny_opt

    root = tmp_path_factory.mktemp("training")
    shapes = {"small": dict(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32),
              "large": dict(hidden_size=64, ffn_dim=128, word_embed_proj_dim=64)}
    folders = []
    for number, (name, shape) in enumerate(shapes.items()):
        for step in (0, 1000, 2000):
            folders.append(str(build_tiny_opt(root / name / f"step-{step}", seed=10 * number + step // 1000,
                                              num_hidden_layers=2, num_attention_heads=4, **shape)))
    return root, folders


def test_a_sweep_of_checkpoints_reports_each_model_through_training(checkpoints, tmp_path):
    root, folders = checkpoints
    result = run("sweep", "decoy", "--models", ",".join(folders), "--n", "24", "--device", "cpu",
                 "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "run" / "training_verdicts.json").read_text())
    assert set(training["decoy"]) == {str(root / "small"), str(root / "large")}
    for verdict in training["decoy"].values():
        assert verdict["kind"] in ("getting worse", "getting better", "U-shaped", "inverted-U", "flat")
        assert verdict["statistics"]["thousand_steps"] == [0.0, 1.0, 2.0]
    size_verdict = json.loads((tmp_path / "run" / "verdicts.json").read_text())["decoy"]
    assert len(size_verdict["statistics"]["mean_loss"]) == 2  # the size trend takes each model's latest step
    png = (tmp_path / "run" / "plots" / "decoy-training.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    steps = [row["step"] for row in csv.DictReader((tmp_path / "run" / "summary.csv").open())]
    assert sorted(steps) == ["0", "0", "1000", "1000", "2000", "2000"]
    assert "through training:" in one_line(result)


def test_a_hub_model_at_a_revision_is_read_from_the_cache(checkpoint_dirs, tmp_path):
    """The hub's cache layout built by hand: refs/step1000 names a snapshot holding a tiny model."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny" / "snapshots" / ("ab" * 20)
    shutil.copytree(checkpoint_dirs["opt-plain"], snapshot)
    (cache / "models--acme--tiny" / "refs").mkdir()
    (cache / "models--acme--tiny" / "refs" / "step1000").write_text("ab" * 20)
    data = write_rows(tmp_path / "d.jsonl", random_classification(71, n_rows=4))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def score(model, out):
        return subprocess.run([sys.executable, "-m", "invscale", "score", str(data), "--model", model, "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=300)

    found = score("acme/tiny@step1000", tmp_path / "hub.jsonl")
    assert found.returncode == 0, found.stderr[-2000:]
    local = score(checkpoint_dirs["opt-plain"], tmp_path / "local.jsonl")
    assert local.returncode == 0, local.stderr[-2000:]
    assert (tmp_path / "hub.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    meta = json.loads((tmp_path / "hub.jsonl.meta.json").read_text())
    assert meta["model"] == "acme/tiny@step1000"
    assert meta["model_fingerprint"] == json.loads((tmp_path / "local.jsonl.meta.json").read_text())["model_fingerprint"]
    missing = score("acme/tiny@step9", tmp_path / "missing.jsonl")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "revision 'step9' of acme/tiny is not in the local cache" in " ".join(missing.stderr.split())


def test_the_training_plot_is_against_tokens_where_they_are_known():
    from invscale.study.plot import training_figure

    def row(step, tokens):
        return {"step": step, "training_tokens": tokens, "n": 10, "mean_loss": 1.0 + step / 1e4, "loss_low": 0.9,
                "loss_high": 1.5, "accuracy": 0.5, "accuracy_low": 0.4, "accuracy_high": 0.6}

    chance = {"chance_loss": 0.69, "chance_accuracy": 0.5}
    known = training_figure("t", {"m": [row(1000, 2e9), row(2000, 4e9)]}, {"m": "flat"}, chance)
    assert [axis.get_xlabel() for axis in known.axes] == ["training tokens", "training tokens"]
    unknown = training_figure("t", {"m": [row(1000, None), row(2000, None)]}, {"m": "flat"}, chance)
    assert [axis.get_xlabel() for axis in unknown.axes] == ["training step", "training step"]
