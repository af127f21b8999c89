"""Model against model: paired differences with intervals, McNemar's exact test, flips, Holm."""

import csv
import json
import shutil
from math import comb

import pytest

import invscale
from invscale.results import read_results
from invscale.study.compare import holm, mcnemar_exact
from invscale.study.run import read_manifest, results_path
from cli_run import one_line, run


def test_mcnemar_is_the_two_sided_exact_binomial_test():
    assert mcnemar_exact(10, 2) == pytest.approx(2 * sum(comb(12, k) for k in range(3)) / 2**12)  # 0.0386
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 7) == pytest.approx(2 / 2**7)


def test_holm_steps_down_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []


@pytest.fixture(scope="module")
def swept(checkpoint_dirs, tmp_path_factory):
    """A run folder of two tiny models on two generated tasks, one of them with two seeds, and a
    third model that is a copy of the first."""
    folder = tmp_path_factory.mktemp("compare")
    twin = folder / "twin"
    shutil.copytree(checkpoint_dirs["opt-plain"], twin)
    models = [checkpoint_dirs["opt-plain"], checkpoint_dirs["opt-350m-shape"], str(twin)]
    result = run("sweep", "decoy", "gambling", "--models", ",".join(models), "--n", "30", "--seeds", "0,1",
                 "--device", "cpu", "--out", folder / "run")
    assert result.exit_code == 0, result.output
    return folder / "run", models


def test_the_comparison_is_of_the_same_examples(swept):
    run_dir, (first, second, _) = swept
    comparison = invscale.compare(run_dir, first, second)
    manifest = read_manifest(run_dir)
    by_name = {model["name"]: model for model in manifest["models"]}
    assert [task.task for task in comparison.tasks] == ["decoy", "gambling"]
    for task in comparison.tasks:
        members = [d for d in manifest["datasets"] if d.get("group") == task.task]
        rows = [[sorted(read_results(results_path(run_dir, manifest, by_name[name], d)), key=lambda r: r["index"])
                 for d in members] for name in (first, second)]
        a = [r for part in rows[0] for r in part]
        b = [r for part in rows[1] for r in part]
        assert task.n == len(a) == 60
        assert task.only_first_correct == sum(x["correct"] and not y["correct"] for x, y in zip(a, b))
        assert task.only_second_correct == sum(y["correct"] and not x["correct"] for x, y in zip(a, b))
        assert task.accuracy_difference == pytest.approx(sum(map(lambda r: r["correct"], b)) / 60
                                                         - sum(map(lambda r: r["correct"], a)) / 60)
        assert task.loss_difference == pytest.approx(sum(r["loss"] for r in b) / 60 - sum(r["loss"] for r in a) / 60)
        assert task.accuracy_low <= task.accuracy_difference <= task.accuracy_high
        assert task.loss_low <= task.loss_difference <= task.loss_high
        assert task.mcnemar_p == mcnemar_exact(task.only_first_correct, task.only_second_correct)
    assert [t.mcnemar_p_holm for t in comparison.tasks] == holm([t.mcnemar_p for t in comparison.tasks])
    written = list(csv.DictReader(comparison.path.open()))
    assert [row["task"] for row in written] == ["decoy", "gambling"]


def test_a_model_against_its_copy_differs_in_nothing(swept):
    run_dir, (first, _, twin) = swept
    for task in invscale.compare(run_dir, first, "twin").tasks:
        assert task.only_first_correct == task.only_second_correct == 0 and task.mcnemar_p == 1.0
        assert (task.loss_low, task.loss_difference, task.loss_high) == (0.0, 0.0, 0.0)


def test_compare_on_the_command_line(swept):
    run_dir, (first, second, _) = swept
    result = run("compare", run_dir, first, second)
    assert result.exit_code == 0, result.output
    text = one_line(result)
    assert "McNemar's exact test, Holm-corrected over 2 tasks" in text and "decoy" in text and "gambling" in text
    refused = run("compare", run_dir, first, "no-such-model")
    assert refused.exit_code == 2 and "'no-such-model': no model of this run is called so" in one_line(refused)
    same = run("compare", run_dir, first, first)
    assert same.exit_code == 2 and "name the same model" in one_line(same)
    ambiguous = run("compare", run_dir, first, "opt")
    assert ambiguous.exit_code == 2 and "more than one model" in one_line(ambiguous)
    assert json.loads((run_dir / "sweep.json").read_text())["models"]  # the run folder is left as it was
    reported = run("report", run_dir, "--compare", f"{first},{second}")
    assert reported.exit_code == 0 and "Holm-corrected over 2 tasks" in one_line(reported)
    assert "summary.csv, verdicts.json and plots/" in one_line(reported)
