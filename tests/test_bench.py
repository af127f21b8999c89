"""``invscale bench`` on CPU: every method runs, agrees, and is reported; baselines are exact."""

import json

import pytest
import torch
from typer.testing import CliRunner

from invscale.benchmark import run as bench_run
from invscale.benchmark.baselines import kv_reuse_logprobs, per_option_logprobs
from invscale.benchmark.workload import WordIdTokenizer, build_opt, synthetic_dataset
from invscale.cli import app
from random_data import as_dataset, random_classification
from reference import max_abs_diff, reference_logprob

runner = CliRunner()


def test_bench_smoke_reports_every_method_after_the_agreement_check(tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--shape", "tiny", "--items", "5", "--prompt-len", "24", "--options", "3",
                                 "--option-len", "2", "--preface-len", "7", "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    names = [m["method"] for m in figures["methods"]]
    assert names == list(bench_run.METHODS)  # the interpreter lets the Triton method run on CPU
    assert figures["agreement_checked"] and all(m["max_abs_diff_vs_per_option"] <= 1e-3 for m in figures["methods"])
    assert figures["unique_tokens"] < figures["naive_tokens"] and figures["floor_seconds"] > 0
    assert all(name in result.stdout for name in names) and "agree within" in result.stdout
    text = " ".join(result.output.split())
    assert all(f"{name}: timing 1 run(s)" in text for name in names)  # a progress line per method
    assert "÷floor: time ÷ the FLOP floor" in text and " 0.0 TFLOP/s" not in text


def test_flop_rates_are_shown_in_a_unit_that_shows_them():
    from invscale.benchmark.report import flop_rate

    assert flop_rate(7.5e10) == "75.0 GFLOP/s" and flop_rate(7.9e14) == "790.0 TFLOP/s"


def test_bench_refuses_to_report_when_methods_disagree(monkeypatch):
    def off_by_a_bit(*args, **kwargs):
        return [[lp + 0.01 for lp in row] for row in kv_reuse_logprobs(*args, **kwargs)]

    monkeypatch.setattr(bench_run, "kv_reuse_logprobs", off_by_a_bit)
    result = runner.invoke(app, ["bench", "--shape", "tiny", "--items", "3", "--prompt-len", "8",
                                 "--methods", "hf-kv-reuse"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "hf-kv-reuse differs from hf-per-option by 0.01" in result.output


def test_bench_on_a_real_file_and_checkpoint(checkpoint_dirs, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(4, n_rows=6)))
    result = runner.invoke(app, ["bench", "--model", checkpoint_dirs["opt-350m-shape"], "--data", str(data),
                                 "--methods", "hf-per-option,invscale-torch"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["bench", "--data", str(data)])
    assert bad.exit_code == 2 and "--data needs --model" in bad.output
    bad = runner.invoke(app, ["bench", "--shape", "opt-9b"])
    assert bad.exit_code == 2 and "--shape opt-9b: choose one of" in bad.output


@pytest.mark.parametrize("checkpoint", ["opt-plain", "opt-350m-shape"])
def test_baselines_equal_the_per_option_reference(loaded_models, checkpoint):
    """Both HF baselines give each option's reference log-prob (fp32), ragged lengths included."""
    loaded = loaded_models[checkpoint]
    dataset = as_dataset(random_classification(11, n_rows=8))
    per_option = per_option_logprobs(loaded.model, loaded.tokenizer, dataset, token_budget=64)
    kv_reuse = kv_reuse_logprobs(loaded.model, loaded.tokenizer, dataset)
    for row, a, b in zip(dataset.rows, per_option, kv_reuse):
        expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(a, expected) <= 1e-4 and max_abs_diff(b, expected) <= 1e-4


def test_synthetic_workload_has_the_token_counts_asked_for():
    dataset = synthetic_dataset(4, prompt_len=10, options=3, option_len=2, preface_len=5, vocab=100)
    tokenizer = WordIdTokenizer()
    row = dataset.rows[0]
    assert len(tokenizer([row.prompt])["input_ids"][0]) == 1 + 5 + 10
    assert all(len(tokenizer([c], add_special_tokens=False)["input_ids"][0]) == 2 for c in row.classes)
    prefaces = {" ".join(r.prompt.split()[:5]) for r in dataset.rows}
    assert len(prefaces) == 1 and len({r.prompt for r in dataset.rows}) == 4
    model = build_opt("tiny", torch.float32, "cpu")
    assert model.get_output_embeddings().weight.shape[0] == 50272


def test_random_checkpoint_loads_completely_and_initialises_like_opt(tmp_path):
    from transformers import OPTForCausalLM

    from invscale.benchmark.streaming import write_random_checkpoint

    directory = write_random_checkpoint("tiny", tmp_path / "ckpt", torch.float32, seed=3)
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == ["layer-000.safetensors", "layer-001.safetensors",
                                                         "rest.safetensors"]
    model, info = OPTForCausalLM.from_pretrained(directory, output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.lm_head.weight is model.model.decoder.embed_tokens.weight  # tied, as OPT is
    layer = model.model.decoder.layers[1]
    assert torch.equal(layer.final_layer_norm.weight, torch.ones_like(layer.final_layer_norm.weight))
    assert not layer.fc1.bias.any() and abs(float(layer.fc1.weight.detach().std()) - 0.02) < 0.002
    again = write_random_checkpoint("tiny", tmp_path / "again", torch.float32, seed=3)
    assert (again / "layer-001.safetensors").read_bytes() == (directory / "layer-001.safetensors").read_bytes()


def test_streaming_benchmark_agrees_with_resident_and_reports_floors(tmp_path):
    from invscale.benchmark.streaming import run_streaming_benchmark, write_random_checkpoint

    directory = write_random_checkpoint("tiny", tmp_path / "ckpt", torch.float32)
    dataset = synthetic_dataset(items=20, prompt_len=30, options=3, option_len=3, preface_len=10)
    figures = run_streaming_benchmark(directory, WordIdTokenizer(), dataset, torch.float32, torch.device("cpu"),
                                      budget=14_500_000, max_tokens_per_pack=150)
    assert figures["agrees"] and figures["max_abs_diff_vs_resident"] <= 1e-5
    assert figures["streamed"]["groups"] > 1 and figures["budget_gib"] * 2**30 == 14_500_000
    assert figures["flop_floor_seconds"] > 0 and figures["pcie_floor_seconds"] is None  # no host link on CPU
    assert figures["streamed"]["seconds"] > 0 and figures["resident"]["seconds"] > 0


def test_host_only_bench_reports_the_host_side(checkpoint_dirs, tmp_path):
    """--host-only times tokenizing, planning and building every pack for a checkpoint's tokenizer
    (no weights read) and reports what it computed: the unique tokens a scoring run computes."""
    from invscale.data import read_dataset
    from invscale.models import load_model
    from invscale.scoring.scorer import ScoringJob

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(8, n_rows=30)))
    out = tmp_path / "host.json"
    result = runner.invoke(app, ["bench", "--host-only", "--model", checkpoint_dirs["llama-gqa2"], "--data", str(data),
                                 "--max-tokens-per-pack", "64", "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    for key in ("naive_tokens", "unique_tokens", "host_seconds", "first_pack_seconds", "host_over_floor"):
        assert figures[key] > 0, key
    assert figures["first_pack_seconds"] <= figures["host_seconds"] and figures["spliced_pairs"] > 0
    loaded = load_model(checkpoint_dirs["llama-gqa2"])
    job = ScoringJob(loaded.model, loaded.tokenizer, read_dataset(str(data)), max_tokens_per_pack=64)
    list(job.results())
    assert (figures["unique_tokens"], figures["naive_tokens"]) == (job.stats.unique_tokens, job.stats.naive_tokens)
    assert "host ÷ floor" in result.stdout
    missing = runner.invoke(app, ["bench", "--host-only", "--data", str(data)])
    assert missing.exit_code == 2 and "--host-only needs --model" in missing.output
