"""The Python API: what the command line runs, byte for byte; data in every form a notebook holds;
per-option log-probs as exact as the scorer; the README's example; and a layout whose imports only
go down."""

import ast
import json
import pydoc
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import invscale
from invscale.cli import app
from invscale.data import read_dataset
from random_data import random_classification
from reference import isclose, reference_logprob

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def without_seconds(path: Path) -> dict:
    meta = json.loads(path.read_text())
    meta.pop("scoring_seconds")
    return meta


def csv_without_column(path: Path, column: str) -> list[list[str]]:
    import csv

    rows = list(csv.reader(path.open()))
    drop = rows[0].index(column)
    return [row[:drop] + row[drop + 1:] for row in rows]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in random_classification(97, n_rows=20)))
    return path


def test_help_lists_the_api():
    text = pydoc.render_doc(invscale, renderer=pydoc.plaintext)
    for name in ("Scorer", "Results", "evaluate", "sweep", "report", "generate", "as_dataset"):
        assert name in text and name in invscale.__all__


def test_score_from_python_writes_what_the_command_line_writes(checkpoint_dirs, data, tmp_path):
    model = checkpoint_dirs["llama-gqa2"]
    cli("score", data, "--model", model, "--out", tmp_path / "cli.jsonl")
    results = invscale.Scorer(model, progress=False).score(data, tmp_path / "api.jsonl")
    assert (tmp_path / "api.jsonl").read_bytes() == (tmp_path / "cli.jsonl").read_bytes()
    assert without_seconds(tmp_path / "api.jsonl.meta.json") == without_seconds(tmp_path / "cli.jsonl.meta.json")
    assert results.records == [json.loads(line) for line in (tmp_path / "cli.jsonl").read_text().splitlines()]
    assert results.summary["n"] == len(results.records) and 0 <= results.summary["accuracy"] <= 1


def test_every_form_of_data_scores_alike(checkpoint_dirs, data, tmp_path):
    pandas = pytest.importorskip("pandas")
    scorer = invscale.Scorer(checkpoint_dirs["opt-plain"], progress=False)
    records = [json.loads(line) for line in data.read_text().splitlines()]
    expected = scorer.score(data).records
    for form in (records, pandas.DataFrame(records), read_dataset(data)):
        assert scorer.score(form).records == expected
    frame = scorer.score(records).to_pandas()
    assert list(frame["index"]) == list(range(len(records)))
    saved = scorer.score(records).save(tmp_path / "saved.jsonl")
    assert [json.loads(line) for line in saved.read_text().splitlines()] == expected
    with pytest.raises(TypeError, match="give a path, a list of dicts"):
        scorer.score(42)


def test_options_are_the_reference_log_probs(checkpoint_dirs):
    scorer = invscale.Scorer(checkpoint_dirs["llama-gqa3"], progress=False)
    prompts = ["The capital of France is", "Two plus two is", "Colour of the sky:"]
    per_prompt = [[" Paris", " Rome", " a city"], [" four", " 4"], [" blue", " blue", " grey"]]  # repeats allowed
    logprobs = scorer.options(prompts, per_prompt)
    for prompt, options, values in zip(prompts, per_prompt, logprobs):
        assert len(values) == len(options)
        for option, value in zip(options, values):
            assert isclose(value, reference_logprob(scorer.loaded.model, scorer.loaded.tokenizer, prompt, option))
    shared = scorer.options(prompts[:2], [" yes", " no"])
    assert len(shared) == 2 and all(len(values) == 2 for values in shared)
    with pytest.raises(ValueError, match="2 lists for 3 prompts"):
        scorer.options(prompts, per_prompt[:2])


def test_evaluate_from_python_writes_what_the_command_line_writes(checkpoint_dirs, tmp_path):
    model = checkpoint_dirs["opt-plain"]
    cli("evaluate", "--tasks", "decoy,gambling", "--n", "8", "--seeds", "0,1", "--model", model, "--out", tmp_path / "cli")
    evaluation = invscale.evaluate(["decoy", "gambling"], model, n=8, seeds=[0, 1], out=tmp_path / "api",
                                   progress=False)
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").iterdir() if p.suffix == ".jsonl")
    assert len(files) == 8  # data and results of two tasks × two seeds
    for name in files:
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    assert csv_without_column(evaluation.summary_csv, "seconds") == csv_without_column(tmp_path / "cli" / "summary.csv",
                                                                                      "seconds")
    assert [row["task"] for row in evaluation.rows] == ["decoy", "gambling"]


def test_sweep_from_python_writes_what_the_command_line_writes(checkpoint_dirs, tmp_path):
    models = [checkpoint_dirs["opt-plain"], checkpoint_dirs["opt-350m-shape"]]
    cli("sweep", "decoy", "--models", ",".join(models), "--n", "8", "--device", "cpu", "--out", tmp_path / "cli")
    study = invscale.sweep(["decoy"], models, out=tmp_path / "api", n=8, device="cpu", progress=False)
    results = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*.results.jsonl"))
    assert len(results) == 2
    for name in results:
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    for name in ("summary.csv", "verdicts.json"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    assert set(study.verdicts) == {"decoy"} and not study.unfinished
    assert set(study.plots) == {"decoy", "overview"} and all(path.exists() for path in study.plots.values())
    assert invscale.report(tmp_path / "api").summary == study.summary


def test_generate_gives_the_rows_the_command_line_writes(tmp_path):
    dataset = invscale.generate("gambling", n=5, seed=3)
    written = cli("generate", "gambling", "--n", "5", "--seed", "3").stdout
    assert [json.loads(line)["prompt"] for line in written.splitlines()] == [row.prompt for row in dataset.rows]
    assert len(dataset.content_sha256) == 64


def test_the_readme_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "decoy.results.jsonl").exists()


# Each layer may import its own and lower layers only (the command line and the API at the top).
LAYERS = [
    {"messages", "cache", "data", "progress", "bootstrap"},
    {"generators", "kernels"},
    {"scoring"},
    {"decoding"},
    {"tiny", "models"},
    {"results", "generation_job", "chain_of_thought", "numeric", "jobs"},
    {"benchmark", "integrations", "study"},
    {"api"},
    {"cli", "__main__", "__init__"},
]


def _layer(module: str) -> int:
    return next(number for number, names in enumerate(LAYERS) if module in names)


def test_imports_only_go_down_the_layers():
    climbs = []
    for path in sorted((ROOT / "invscale").rglob("*.py")):
        relative = path.relative_to(ROOT / "invscale")
        top = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                parts = name.split(".")
                if parts[0] != "invscale" or len(parts) < 2:
                    continue
                if _layer(parts[1]) > _layer(top):
                    climbs.append(f"{relative} imports {name}")
    assert not climbs, climbs
