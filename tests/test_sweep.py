"""Sweeps over a family of tiny checkpoints: run folder, resume, failures, report, verdicts."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from invscale.cli import app
from invscale.data import write_dataset
from invscale.generators import generate
from invscale.study import family, run as sweep_run
from invscale.study.verdict import trend_verdict
from invscale.tiny import build_tiny_opt

runner = CliRunner()
SIZES = [dict(hidden_size=16, num_hidden_layers=1, ffn_dim=32, word_embed_proj_dim=16),
         dict(hidden_size=32, num_hidden_layers=2, ffn_dim=64, word_embed_proj_dim=32),
         dict(hidden_size=48, num_hidden_layers=3, ffn_dim=96, word_embed_proj_dim=48)]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    return [str(build_tiny_opt(root / f"size{i}", seed=i, num_attention_heads=4, **size)) for i, size in enumerate(SIZES)]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    paths = []
    for task, n in (("gambling", 30), ("ultimatum", 24)):
        dataset, _ = generate(task, n, seed=1)
        write_dataset(dataset, root / f"{task}.jsonl")
        paths.append(str(root / f"{task}.jsonl"))
    return paths


def sweep(task_files, models, out):
    return runner.invoke(app, ["sweep", *task_files, "--models", ",".join(models), "--out", str(out)])


def test_sweep_writes_results_summary_plots_and_verdicts(family_dirs, task_files, tmp_path):
    out = tmp_path / "run"
    broken = tmp_path / "not-a-checkpoint"
    broken.mkdir()
    result = sweep(task_files, [family_dirs[0], str(broken), *family_dirs[1:]], out)
    assert result.exit_code == 1, result.output  # one model failed: reported, the others scored
    assert "1 of 4 models did not finish every dataset" in " ".join(result.output.split())
    manifest = json.loads((out / "sweep.json").read_text())
    status = {m["name"]: m["status"] for m in manifest["models"]}
    assert status[str(broken)] == "failed" and "no config.json" in manifest["models"][1]["reason"]
    assert [status[d] for d in family_dirs] == ["done"] * 3
    params = [m["params"] for m in manifest["models"] if m["status"] == "done"]
    assert params == sorted(params) and len(set(params)) == 3
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 2 * 3 and {r["task"] for r in rows} == {"gambling", "ultimatum"}
    for row in rows:
        assert float(row["accuracy_low"]) <= float(row["accuracy"]) <= float(row["accuracy_high"])
        assert float(row["loss_low"]) <= float(row["mean_loss"]) <= float(row["loss_high"])
    for task in ("gambling", "ultimatum", "overview"):
        png = (out / "plots" / f"{task}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert set(verdicts) == {"gambling", "ultimatum"}
    assert all(v["kind"] in ("inverse", "positive", "U-shaped", "inverted-U", "flat") for v in verdicts.values())
    assert f"{str(broken)}: failed" in result.stdout and "gambling" in result.stdout

    (out / "summary.csv").unlink()
    (out / "plots" / "gambling.png").unlink()
    again = runner.invoke(app, ["report", str(out)])
    assert again.exit_code == 0 and (out / "summary.csv").exists() and (out / "plots" / "gambling.png").exists()
    assert json.loads((out / "verdicts.json").read_text()) == verdicts

    by_model = {m["name"]: m for m in manifest["models"]}
    assert all(0 < by_model[d]["non_embedding_params"] < by_model[d]["params"] for d in family_dirs)
    non_embedding = runner.invoke(app, ["report", str(out), "--x-axis", "non-embedding"])
    assert non_embedding.exit_code == 0 and {r["non_embedding_params"] for r in csv.DictReader((out / "summary.csv").open())}
    flops = runner.invoke(app, ["report", str(out), "--x-axis", "flops"])
    assert flops.exit_code == 2 and "no training FLOPs (6·N·D) known for" in " ".join(flops.output.split())


def test_resume_loads_only_models_with_unfinished_datasets(family_dirs, task_files, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert sweep(task_files, family_dirs, out).exit_code == 0
    loaded = []
    real_load = sweep_run.load_for_scoring

    def counting_load(name, **kwargs):
        loaded.append(name)
        return real_load(name, **kwargs)

    monkeypatch.setattr(sweep_run, "load_for_scoring", counting_load)
    assert sweep(task_files, family_dirs, out).exit_code == 0
    assert loaded == [], "a finished sweep loads no model"
    manifest = json.loads((out / "sweep.json").read_text())
    unfinished = sweep_run.results_path(out, manifest, manifest["models"][1], manifest["datasets"][1])
    lines = unfinished.read_text().splitlines()
    unfinished.write_text("\n".join(lines[:10]) + "\n")  # as if interrupted after 10 rows
    result = sweep(task_files, family_dirs, out)
    assert result.exit_code == 0 and loaded == [family_dirs[1]]
    assert len(unfinished.read_text().splitlines()) == len(lines)


def test_family_members_that_do_not_fit_or_load_are_reported(task_files, tmp_path, monkeypatch):
    monkeypatch.setattr(family, "device_memory", lambda device: 8 * 2**30)
    result = runner.invoke(app, ["sweep", task_files[0], "--family", "opt", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    models = {m["name"]: m for m in json.loads((tmp_path / "run" / "sweep.json").read_text())["models"]}
    assert list(models) == [member.model for member in family.family_members("opt")]
    assert models["facebook/opt-66b"]["non_embedding_params"] == 65_237_501_952
    assert models["facebook/opt-66b"]["status"] == "skipped" and "GiB" in models["facebook/opt-66b"]["reason"]
    assert models["facebook/opt-125m"]["status"] == "failed"  # no hub here: reported, and the sweep went on


# every family member's published shape: (hidden, layers, heads, kv heads, ffn, vocab, tied, extra config)
SHAPES = {
    "facebook/opt-125m": (768, 12, 12, 12, 3072, 50272, True, {}),
    "facebook/opt-350m": (1024, 24, 16, 16, 4096, 50272, True, dict(word_embed_proj_dim=512, do_layer_norm_before=False)),
    "facebook/opt-1.3b": (2048, 24, 32, 32, 8192, 50272, True, {}),
    "facebook/opt-2.7b": (2560, 32, 32, 32, 10240, 50272, True, {}),
    "facebook/opt-6.7b": (4096, 32, 32, 32, 16384, 50272, True, {}),
    "facebook/opt-13b": (5120, 40, 40, 40, 20480, 50272, True, {}),
    "facebook/opt-30b": (7168, 48, 56, 56, 28672, 50272, True, {}),
    "facebook/opt-66b": (9216, 64, 72, 72, 36864, 50272, True, {}),
    "EleutherAI/pythia-70m": (512, 6, 8, 8, 2048, 50304, False, {}),
    "EleutherAI/pythia-160m": (768, 12, 12, 12, 3072, 50304, False, {}),
    "EleutherAI/pythia-410m": (1024, 24, 16, 16, 4096, 50304, False, {}),
    "EleutherAI/pythia-1b": (2048, 16, 8, 8, 8192, 50304, False, {}),
    "EleutherAI/pythia-1.4b": (2048, 24, 16, 16, 8192, 50304, False, {}),
    "EleutherAI/pythia-2.8b": (2560, 32, 32, 32, 10240, 50304, False, {}),
    "EleutherAI/pythia-6.9b": (4096, 32, 32, 32, 16384, 50432, False, {}),
    "EleutherAI/pythia-12b": (5120, 36, 40, 40, 20480, 50688, False, {}),
    "openai-community/gpt2": (768, 12, 12, 12, 3072, 50257, True, {}),
    "openai-community/gpt2-medium": (1024, 24, 16, 16, 4096, 50257, True, {}),
    "openai-community/gpt2-large": (1280, 36, 20, 20, 5120, 50257, True, {}),
    "openai-community/gpt2-xl": (1600, 48, 25, 25, 6400, 50257, True, {}),
    "Qwen/Qwen2.5-0.5B": (896, 24, 14, 2, 4864, 151936, True, {}),
    "Qwen/Qwen2.5-1.5B": (1536, 28, 12, 2, 8960, 151936, True, {}),
    "Qwen/Qwen2.5-3B": (2048, 36, 16, 2, 11008, 151936, True, {}),
    "Qwen/Qwen2.5-7B": (3584, 28, 28, 4, 18944, 152064, False, {}),
    "Qwen/Qwen2.5-14B": (5120, 48, 40, 8, 13824, 152064, False, {}),
    "Qwen/Qwen2.5-32B": (5120, 64, 40, 8, 27648, 152064, False, {}),
    "Qwen/Qwen2.5-72B": (8192, 80, 64, 8, 29568, 152064, False, {}),
    "google/gemma-2-2b": (2304, 26, 8, 4, 9216, 256000, True, dict(head_dim=256)),
    "google/gemma-2-9b": (3584, 42, 16, 8, 14336, 256000, True, dict(head_dim=256)),
    "google/gemma-2-27b": (4608, 46, 32, 16, 36864, 256000, True, dict(head_dim=128)),
    "HuggingFaceTB/SmolLM2-135M": (576, 30, 9, 3, 1536, 49152, True, {}),
    "HuggingFaceTB/SmolLM2-360M": (960, 32, 15, 5, 2560, 49152, True, {}),
    "HuggingFaceTB/SmolLM2-1.7B": (2048, 24, 32, 32, 8192, 49152, True, {}),
}
FAMILY_CONFIGS = {"opt": "OPTConfig", "pythia": "GPTNeoXConfig", "gpt2": "GPT2Config", "qwen2.5": "Qwen2Config",
                  "gemma2": "Gemma2Config", "smollm2": "LlamaConfig", "gpt-neo": "GPTNeoConfig", "gpt-j": "GPTJConfig",
                  "bloom": "BloomConfig", "cerebras-gpt": "GPT2Config", "mamba": "MambaConfig", "qwen3": "Qwen3Config"}
# the families added later, each member's published config settings as they are written there
CONFIGS = {
    **{f"EleutherAI/gpt-neo-{size}": dict(hidden_size=hidden, num_layers=layers, num_heads=heads, vocab_size=50257,
                                          attention_types=[[["global", "local"], layers // 2]],
                                          max_position_embeddings=2048)
       for size, hidden, layers, heads in (("125m", 768, 12, 12), ("1.3B", 2048, 24, 16), ("2.7B", 2560, 32, 20))},
    "EleutherAI/gpt-j-6b": dict(n_embd=4096, n_layer=28, n_head=16, rotary_dim=64, vocab_size=50400, n_positions=2048,
                                tie_word_embeddings=False),
    **{f"bigscience/bloom-{size}": dict(hidden_size=hidden, n_layer=layers, n_head=heads, vocab_size=250880)
       for size, hidden, layers, heads in (("560m", 1024, 24, 16), ("1b1", 1536, 24, 16), ("1b7", 2048, 24, 16),
                                           ("3b", 2560, 30, 32), ("7b1", 4096, 30, 32))},
    **{f"cerebras/Cerebras-GPT-{size}": dict(n_embd=hidden, n_layer=layers, n_head=heads, n_inner=4 * hidden,
                                             n_positions=2048, vocab_size=50257)
       for size, hidden, layers, heads in (("111M", 768, 10, 12), ("256M", 1088, 14, 17), ("590M", 1536, 18, 12),
                                           ("1.3B", 2048, 24, 16), ("2.7B", 2560, 32, 32), ("6.7B", 4096, 32, 32),
                                           ("13B", 5120, 40, 40))},
    **{f"state-spaces/mamba-{size}-hf": dict(hidden_size=hidden, num_hidden_layers=layers, vocab_size=50280)
       for size, hidden, layers in (("130m", 768, 24), ("370m", 1024, 48), ("790m", 1536, 48), ("1.4b", 2048, 48),
                                    ("2.8b", 2560, 64))},
    **{f"Qwen/Qwen3-{size}": dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  num_key_value_heads=8, intermediate_size=ffn, head_dim=128, vocab_size=151936,
                                  tie_word_embeddings=tied)
       for size, hidden, layers, heads, ffn, tied in (("0.6B", 1024, 28, 16, 3072, True), ("1.7B", 2048, 28, 16, 6144, True),
                                                      ("4B", 2560, 36, 32, 9728, True), ("8B", 4096, 36, 32, 12288, False),
                                                      ("14B", 5120, 40, 40, 17408, False),
                                                      ("32B", 5120, 64, 64, 25600, False))},
}


@pytest.mark.parametrize("name", list(family.FAMILIES))
def test_family_parameter_counts_follow_from_the_published_configs(name):
    """Each member's parameters (and non-embedding parameters) equal a model built on the meta
    device from its published shape, and every family is a causal LM the scorer scores (on one
    path or the other)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from invscale.scoring.architectures import check_causal_lm

    config_class = getattr(transformers, FAMILY_CONFIGS[name])
    for member in family.family_members(name):
        if member.model in CONFIGS:
            config = config_class(**CONFIGS[member.model])
            check_causal_lm(config)
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config)
            assert sum(p.numel() for p in model.parameters()) == member.params, member.model
            assert family.non_embedding_params(model) == member.non_embedding_params, member.model
            continue
        hidden, layers, heads, kv_heads, ffn, vocab, tied, extra = SHAPES[member.model]
        names = dict(OPTConfig=("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim"),
                     GPT2Config=("n_embd", "n_layer", "n_head", "n_inner")).get(
            FAMILY_CONFIGS[name], ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"))
        settings = dict(zip(names, (hidden, layers, heads, ffn)), vocab_size=vocab, tie_word_embeddings=tied, **extra)
        if FAMILY_CONFIGS[name] not in ("OPTConfig", "GPT2Config", "GPTNeoXConfig"):
            settings["num_key_value_heads"] = kv_heads
        config = config_class(**settings)
        check_causal_lm(config)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        assert sum(p.numel() for p in model.parameters()) == member.params, member.model
        assert family.non_embedding_params(model) == member.non_embedding_params, member.model
        assert member.training_flops is None or member.training_flops > 6 * member.non_embedding_params * 10**11


def test_sweep_help_lists_every_family():
    text = " ".join(runner.invoke(app, ["sweep", "--help"]).output.split())
    assert all(name in text for name in family.FAMILIES)


def test_sweep_needs_one_model_source(task_files, tmp_path):
    result = runner.invoke(app, ["sweep", task_files[0], "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "exactly one of --family or --models" in result.output


PARAMS = [10**6, 10**7, 10**8, 10**9]


def synthetic_losses(means, seed, n=400):
    """Per-example losses of four models on the same examples: shared difficulty, per-model noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.gamma(2.0, 0.35, n)
    return np.stack([np.clip(difficulty + (m - 0.7) + rng.normal(0, 0.3, n), 0, None) for m in means])


@pytest.mark.parametrize("means,expected", [
    ([0.6, 0.7, 0.8, 0.9], "inverse"),
    ([0.9, 0.8, 0.7, 0.6], "positive"),
    ([0.9, 0.7, 0.62, 0.6], "positive"),        # falls then levels off: not inverted-U
    ([0.6, 0.85, 0.85, 0.6], "U-shaped"),       # performance dips in the middle
    ([0.9, 0.6, 0.65, 0.9], "inverted-U"),      # performance peaks in the middle
    ([0.7, 0.7, 0.7, 0.7], "flat"),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_verdict_names_known_shapes(means, expected, seed):
    assert trend_verdict(PARAMS, synthetic_losses(means, seed), seed=seed).kind == expected


@pytest.mark.parametrize("seed", range(5))
def test_verdict_is_flat_on_pure_noise(seed):
    rng = np.random.default_rng(100 + seed)
    verdict = trend_verdict(PARAMS, rng.gamma(2.0, 0.35, (4, 300)), seed=seed)
    assert verdict.kind == "flat" and "contains 0" in verdict.reason


def test_verdict_names_the_models_it_speaks_of():
    names = ["org/small", "org/mid-1", "org/mid-2", "org/large"]
    shuffled = [3, 1, 0, 2]
    verdict = trend_verdict([PARAMS[i] for i in shuffled], synthetic_losses([0.6, 0.85, 0.8, 0.6], 0)[shuffled],
                            names=[names[i] for i in shuffled])
    assert verdict.kind == "U-shaped"
    assert verdict.reason.startswith("org/mid-1 has mean loss above both the smallest model's (org/small) and the "
                                     "largest's (org/large)")


def _summary_row(model, params, accuracy, loss, n=300):
    return {"model": model, "params": params, "n": n, "accuracy": accuracy, "accuracy_low": accuracy - 0.05,
            "accuracy_high": accuracy + 0.05, "mean_loss": loss, "loss_low": loss - 0.1, "loss_high": loss + 0.1}


@pytest.mark.parametrize("sizes", [(125e6, 350e6, 1.3e9), (125e6, 125e6, 1.3e9)])
def test_task_figure_labels_models_band_chance_and_n(sizes):
    """Every model is a labelled point (two of one size included), the band and chance are in the
    legend, chance lies inside the axes, n is in the title; names are tick labels when sizes differ."""
    from invscale.study.plot import BAND_LABEL, task_figure

    rows = [_summary_row(name, size, accuracy, loss) for name, size, accuracy, loss in
            zip(["facebook/opt-125m", "other/opt-125m-b", "facebook/opt-1.3b"], sizes, (0.9, 0.85, 0.95), (0.2, 0.3, 0.1))]
    figure = task_figure("gambling", rows, "flat", {"chance_accuracy": 0.5, "chance_loss": 0.693})
    assert "n = 300" in figure._suptitle.get_text() and "3 models" in figure._suptitle.get_text()
    for axis, chance in zip(figure.axes, (0.5, 0.693)):
        assert sorted(text.get_text() for text in axis.texts) == ["opt-1.3b", "opt-125m", "opt-125m-b"]
        legend = [text.get_text() for text in axis.get_legend().get_texts()]
        assert BAND_LABEL in legend and "chance" in legend
        low, high = axis.get_ylim()
        assert low < chance < high and min(chance - low, high - chance) > 0.01 * (high - low)
        ticks = " ".join(label.get_text() for label in axis.get_xticklabels())
        assert ("opt-125m-b" in ticks) == (len(set(sizes)) == 3)
    figure.clf()


def test_a_sweep_of_generated_tasks_pools_seeds_per_shot_count(family_dirs, tmp_path):
    """Generator names with --shots 0,2 --seeds 0,1: each (shots, seed) dataset is generated into
    the run folder and scored; the report has one task per shot count pooling both seeds."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "gambling", "--n", "10", "--shots", "0,2", "--seeds", "0,1", "--models",
                                 ",".join(family_dirs[:2]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = sorted(p.name for p in (out / "data").iterdir())
    assert data == [f"gambling-{k}shot-seed{s}.jsonl" for k in (0, 2) for s in (0, 1)]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted({(r["task"], r["seeds"]) for r in rows}) == [("gambling-0shot", "0,1"), ("gambling-2shot", "0,1")]
    assert all(int(r["n"]) == 20 for r in rows) and len(rows) == 4
    assert set(json.loads((out / "verdicts.json").read_text())) == {"gambling-0shot", "gambling-2shot"}
    assert (out / "plots" / "gambling-2shot.png").exists()
    again = runner.invoke(app, ["sweep", "gambling", "--n", "10", "--shots", "0,2", "--seeds", "0,1", "--models",
                                ",".join(family_dirs[:2]), "--out", str(out)])
    assert again.exit_code == 0 and "already scored on every dataset" in again.output


def test_seed_clustered_verdicts_are_wider_when_seeds_disagree():
    """Losses whose trend holds within seeds but whose seeds disagree in level: resampling seeds
    widens the slope's interval."""
    rng = np.random.default_rng(3)
    levels = np.repeat([0.0, 0.6, -0.6, 0.3], 100)
    losses = np.stack([1 + 0.05 * m + levels * (m - 1.5) + rng.normal(0, 0.2, 400) for m in range(4)])
    pooled = trend_verdict(PARAMS, losses).statistics["slope_interval"]
    clustered = trend_verdict(PARAMS, losses, clusters=[100] * 4).statistics["slope_interval"]
    assert clustered[1] - clustered[0] > 2 * (pooled[1] - pooled[0])


def test_one_size_is_insufficient_data():
    verdict = trend_verdict([10**6, 10**6], synthetic_losses([0.6, 0.9], 0))
    assert verdict.kind == "insufficient data" and "same size" in verdict.reason


def test_verdict_does_not_depend_on_model_order():
    losses = synthetic_losses([0.6, 0.7, 0.8, 0.9], 0)
    shuffled = [2, 0, 3, 1]
    assert trend_verdict([PARAMS[i] for i in shuffled], losses[shuffled]).kind == "inverse"


def test_streamed_sweep_gives_the_same_results(family_dirs, task_files, tmp_path):
    resident, streamed = tmp_path / "resident", tmp_path / "streamed"
    assert sweep(task_files[:1], family_dirs[:2], resident).exit_code == 0
    result = runner.invoke(app, ["sweep", task_files[0], "--models", ",".join(family_dirs[:2]), "--out", str(streamed),
                                 "--offload", "disk"])
    assert result.exit_code == 0, result.output
    for a, b in zip(csv.DictReader((resident / "summary.csv").open()), csv.DictReader((streamed / "summary.csv").open())):
        assert a["model"] == b["model"] and a["accuracy"] == b["accuracy"]
        assert abs(float(a["mean_loss"]) - float(b["mean_loss"])) <= 1e-5


def test_a_sweep_across_reasoning_budgets_gives_a_verdict_per_model(family_dirs, tmp_path):
    """--cot --reasoning-tokens 0,4,8: each budget is a task variant scored on every model (budget 0
    plainly, the others after chains, 2-shot worked examples showing their chains), and each model
    gets a verdict across budgets and a plot; a rerun redoes nothing; other cues are refused."""
    out = tmp_path / "run"
    arguments = ["sweep", "gambling", "--n", "6", "--shots", "2", "--cot", "--reasoning-tokens", "0,4,8", "--models",
                 ",".join(family_dirs[:2]), "--out", str(out)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "data").iterdir()) == [f"gambling-2shot-cot{b}.jsonl" for b in (0, 4, 8)]
    assert "So the answer is" in (out / "data" / "gambling-2shot-cot4.jsonl").read_text()
    assert "So the answer is" not in (out / "data" / "gambling-2shot-cot0.jsonl").read_text()
    budgets = json.loads((out / "budget_verdicts.json").read_text())
    assert list(budgets) == ["gambling-2shot"] and len(budgets["gambling-2shot"]) == 2
    verdict = next(iter(budgets["gambling-2shot"].values()))
    assert verdict["kind"] in ("worse with more reasoning", "better with more reasoning", "U-shaped", "inverted-U",
                               "flat")
    assert verdict["statistics"]["log2_budget_plus_1"] == pytest.approx([0.0, 2.321928, 3.169925], abs=1e-5)
    assert (out / "plots" / "gambling-2shot-budget.png").exists() and "across reasoning budgets" in result.output
    results = list((out / "results").rglob("gambling-2shot-cot4-*.results.jsonl"))
    assert len(results) == 2 and "chain_token_ids" in results[0].read_text()
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0 and again.output.count("already scored on every dataset") == 2
    other = runner.invoke(app, [*arguments, "--answer-cue", " Therefore"])
    assert other.exit_code == 2 and "other cues or stops" in other.output
