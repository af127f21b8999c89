"""The cache path (the model's own forward and cache) equals the plain per-option forward (fp32,
|Δ logprob| <= 1e-4) in each of its modes, on fresh random data with ragged lengths; the probe picks
the mode the model's cache supports; the path is chosen, reported and refused as the docs say."""

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from conformance import build_tiny
from invscale.cli import app
from invscale.data import TaskType
from invscale.scoring.architectures import UnsupportedModel
from invscale.scoring.cache_runner import CacheRunner, probe
from invscale.scoring.paths import choose_path, sequence_limit
from invscale.scoring.scorer import ScoringJob, score_token_sequences
from random_data import as_dataset, random_classification, random_text
from reference import reference_logprob

TOL = 1e-4


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from invscale.tiny import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def models(tokenizer):
    return {name: build_tiny(name, tokenizer, seed=3) for name in ("llama", "gptj", "mamba", "bloom")}


def worst_difference(model, tokenizer, dataset, **options):
    job = ScoringJob(model, tokenizer, dataset, **options)
    results = {r["index"]: r for r in job.results()}
    assert sorted(results) == [row.index for row in dataset.rows], "every row gets exactly one result"
    worst = 0.0
    for row in dataset.rows:
        expected = [reference_logprob(model, tokenizer, row.prompt, c) for c in row.classes]
        worst = max([worst] + [abs(a - b) for a, b in zip(results[row.index]["class_logprobs"], expected)])
    return worst, job


def test_probe_measures_the_mode_each_cache_supports(models):
    assert probe(models["llama"]) == "multi"  # keys and values: contexts and continuations of many tokens
    assert probe(models["mamba"]) == "step"  # its state advances from a cache one token at a time only


def test_probe_falls_back_to_plain_forwards_when_the_cache_is_wrong(models, monkeypatch):
    """A cache that loses what it held (here: every copy comes back empty) fails the probe in both
    cached modes, and the model is scored by plain forwards, still exactly."""
    from invscale.scoring import cache_runner

    monkeypatch.setattr(cache_runner, "fork", lambda cache, copies, device: None)
    assert probe(models["llama"]) == "plain"


@pytest.mark.parametrize("name,mode", [("llama", "multi"), ("llama", "step"), ("llama", "plain"), ("gptj", None),
                                       ("bloom", None), ("mamba", None)])
@pytest.mark.parametrize("seed,preface", [(21, True), (22, False)])
def test_cache_path_matches_reference(models, tokenizer, monkeypatch, name, mode, seed, preface):
    if mode is not None:  # every mode, forced on one model
        monkeypatch.setattr("invscale.scoring.scorer.probe", lambda model: mode)
    dataset = as_dataset(random_classification(seed, n_rows=10, preface=preface))
    worst, job = worst_difference(models[name], tokenizer, dataset, path="cache")
    assert job.path.name == "cache" and job.path.mode == (mode or probe(models[name]))
    assert worst <= TOL


def test_cache_path_logodds_and_sequences(models, tokenizer):
    rng = random.Random(5)
    records = [{"prompt": random_text(rng, 3, 20) + "?", "other_prompt": random_text(rng, 3, 20) + "?",
                "classes": [" yes", " no way"], "answer_index": rng.randrange(2)} for _ in range(6)]
    model = models["gptj"]
    trie_like = {r["index"]: r for r in ScoringJob(model, tokenizer, as_dataset(records), path="cache").results()}
    for row in as_dataset(records).rows:
        lp = {(p, c): reference_logprob(model, tokenizer, p, c) for p in (row.prompt, row.other_prompt)
              for c in row.classes}
        c0, c1 = row.classes
        difference = (lp[row.prompt, c0] - lp[row.prompt, c1]) - (lp[row.other_prompt, c0] - lp[row.other_prompt, c1])
        if row.answer_index == 1:
            difference = -difference
        assert abs(trie_like[row.index]["logodds_difference"] - difference) <= TOL
    sequences = [{"prompt": random_text(rng, 2, 25), "completion": " " + random_text(rng, 1, 9)} for _ in range(8)]
    dataset = as_dataset(sequences, task_type=TaskType.sequence_prob)
    for result in ScoringJob(model, tokenizer, dataset, path="cache").results():
        row = dataset.rows[result["index"]]
        assert abs(result["logprob"] - reference_logprob(model, tokenizer, row.prompt, row.completion)) <= TOL


@pytest.mark.parametrize("name", ["llama", "mamba"])
def test_token_sequences_on_the_cache_path(models, name):
    """lm-eval's requests: sums and greedy flags equal one plain forward per sequence, on either path."""
    model = models[name]
    rng = random.Random(9)
    shared = tuple(rng.randrange(3, 300) for _ in range(7))
    sequences = []
    for _ in range(12):
        context = shared + tuple(rng.randrange(3, 300) for _ in range(rng.randint(0, 9)))
        continuation = tuple(rng.randrange(3, 300) for _ in range(rng.randint(1, 4)))
        sequences.append((context + continuation, len(continuation)))
    sequences.append(sequences[3])  # a repeat
    logprobs, greedy = score_token_sequences(model, sequences, path="cache")
    for (tokens, n_target), got, is_greedy in zip(sequences, logprobs, greedy):
        with torch.no_grad():
            reference = model(torch.tensor([tokens[:-1]]), use_cache=False).logits[0].float().log_softmax(-1)
        scored = reference[len(tokens) - 1 - n_target:]
        targets = torch.tensor(tokens[len(tokens) - n_target:])
        assert abs(got - float(scored.gather(1, targets[:, None]).sum())) <= TOL
        assert is_greedy == bool((scored.argmax(-1) == targets).all())
    if name == "llama":
        trie, trie_greedy = score_token_sequences(model, sequences, path="trie")
        assert max(abs(a - b) for a, b in zip(trie, logprobs)) <= TOL and trie_greedy == greedy


def test_choice_of_path(models):
    llama, mamba = models["llama"].config, models["mamba"].config
    assert choose_path(llama).name == "trie"
    assert choose_path(llama, "cache").describe() == "cache: asked for (--path cache)"
    taken = choose_path(mamba)
    assert taken.name == "cache" and taken.reason.startswith("mamba: state-space, recurrent")
    with pytest.raises(UnsupportedModel, match="^mamba: state-space"):
        choose_path(mamba, "trie")
    with pytest.raises(ValueError, match="--path sideways: choose one of auto, trie, cache"):
        choose_path(llama, "sideways")


def test_unchecked_window_takes_the_cache_path_past_it(tokenizer):
    """Qwen2-MoE keeps its window in the causal mask alone: the trie is exact while no sequence reaches
    the window; past it, ``auto`` takes the cache path (its own mask applies the window) instead of
    refusing the rows as too long."""
    from conformance import WINDOW, tiny_config

    config = tiny_config("qwen2_moe", len(tokenizer) + 7)
    config.use_sliding_window, config.sliding_window = True, WINDOW
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    assert choose_path(config, "auto", WINDOW).name == "trie"
    assert choose_path(config, "auto", WINDOW + 1).name == "cache"
    assert sequence_limit(config, "trie") == WINDOW and sequence_limit(config, "auto") == config.max_position_embeddings


def test_cli_reports_the_path_and_records_it(models, tokenizer, tmp_path):
    model_dir = tmp_path / "mamba"
    models["mamba"].save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(4, n_rows=5)))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["score", str(data), "--model", str(model_dir), "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "│ path │ cache (step): mamba: state-space, recurrent" in text
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["scoring_path"].startswith("cache (step): mamba:")
    again = CliRunner().invoke(app, ["score", str(data), "--model", str(model_dir), "--device", "cpu",
                                     "--out", str(tmp_path / "trie.jsonl"), "--path", "trie"])
    assert again.exit_code == 2 and "mamba: state-space" in again.output and "Traceback" not in again.output


@pytest.mark.parametrize("name", ["llama", "mamba"])
def test_cache_path_streams_layers(models, tokenizer, tmp_path, name):
    """A streamed model on the cache path: its own forward reads each decoder layer just before
    the layer runs and frees it after; the scores are the resident model's (multi and step modes),
    and no layer's weights are left held."""
    from invscale.scoring.streamed import StreamedModel

    models[name].save_pretrained(tmp_path, max_shard_size="100KB")
    dataset = as_dataset(random_classification(6, n_rows=6))
    resident = {r["index"]: r["class_logprobs"] for r in ScoringJob(models[name], tokenizer, dataset,
                                                                    path="cache").results()}
    streamed = StreamedModel(tmp_path, torch.float32, torch.device("cpu"))
    job = ScoringJob(None, tokenizer, dataset, streamed=streamed, path="cache")
    assert job.path.name == "cache" and job.path.mode == probe(models[name])
    results = list(job.results())
    assert len(results) == len(dataset.rows) == len(resident)
    for result in results:
        assert max(abs(a - b) for a, b in zip(result["class_logprobs"], resident[result["index"]])) <= 1e-5
    assert all(parameter.is_meta for layer in streamed.layers for parameter in layer.parameters())


def test_runner_restores_the_model(models):
    model = models["llama"]
    linears = {name: module.forward for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    with CacheRunner(model) as runner:
        runner.set_preface((5, 6, 7))
    assert {name: module.forward for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)} == linears


def test_sweep_of_gpt_neo_bloom_mamba_and_a_hybrid(tokenizer, tmp_path):
    """Tiny GPT-Neo, BLOOM, Mamba and a linear-attention hybrid (Qwen3-Next) swept as one family:
    results, plots and verdicts; GPT-Neo and BLOOM on the trie (their own attention code routed to
    the tree), Mamba and Qwen3-Next on the cache path."""
    from invscale.data import write_dataset
    from invscale.generators import generate

    models = []
    for seed, name in enumerate(("gpt_neo", "bloom", "mamba", "qwen3_next")):
        folder = tmp_path / name
        build_tiny(name, tokenizer, seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        models.append(str(folder))
    dataset, _ = generate("gambling", 24, seed=1)
    write_dataset(dataset, tmp_path / "gambling.jsonl")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "gambling.jsonl"), "--models", ",".join(models),
                                      "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "sweep.json").read_text())
    assert [m["status"] for m in manifest["models"]] == ["done"] * 4
    assert len((out / "summary.csv").read_text().splitlines()) == 1 + 4
    assert (out / "plots" / "gambling.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "verdicts.json").read_text())["gambling"]["kind"] in (
        "inverse", "positive", "U-shaped", "inverted-U", "flat")
    metas = [json.loads(path.read_text()) for path in (out / "results").rglob("*.meta.json")]
    paths = sorted(meta["scoring_path"].split(" ")[0].rstrip(":") for meta in metas)
    assert paths == ["cache", "cache", "trie", "trie"]


def test_cache_path_resumes_to_the_same_bytes(models, tokenizer, tmp_path):
    """A cache-path run stopped midway (its store cut after 4 results) finishes with the bytes of
    a run never stopped."""
    folder = tmp_path / "mamba"
    models["mamba"].save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(12, n_rows=12)))
    command = ["score", str(data), "--model", str(folder), "--device", "cpu", "--out"]
    assert CliRunner().invoke(app, [*command, str(tmp_path / "whole.jsonl")]).exit_code == 0
    cut = tmp_path / "cut.jsonl"
    assert CliRunner().invoke(app, [*command, str(cut)]).exit_code == 0
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:4]))
    again = CliRunner().invoke(app, [*command, str(cut)])
    assert again.exit_code == 0 and "resuming: 4 of 13 rows" in " ".join(again.output.split())
    assert cut.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


@pytest.mark.parametrize("too_long", ["skip", "truncate-left"])
def test_too_long_rows_on_the_cache_path(tokenizer, too_long):
    """A model with few positions on the cache path: long rows are skipped, or truncated from the left
    and scored exactly (against a plain forward of the kept tokens)."""
    model = build_tiny("gptj", tokenizer, seed=4)
    model.config.n_positions = model.config.max_position_embeddings = 24
    dataset = as_dataset(random_classification(14, n_rows=8))
    job = ScoringJob(model, tokenizer, dataset, path="cache", too_long=too_long)
    assert job.path.name == "cache" and job.too_long_rows > 0
    results = {r["index"]: r for r in job.results()}
    assert sorted(results) == [row.index for row in dataset.rows]
    long_rows = [r for r in results.values() if "skipped" in r or "truncated" in r]
    assert len(long_rows) == job.too_long_rows
    for result in long_rows:
        if too_long == "skip":
            assert "more than the model's 24 positions" in result["skipped"]
            continue
        row = dataset.rows[result["index"]]
        for option, got in zip(row.classes, result["class_logprobs"]):
            ids = tokenizer(row.prompt + option)["input_ids"][-24:]
            n = len(tokenizer(option, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                logprobs = model(torch.tensor([ids]), use_cache=False).logits[0].log_softmax(-1)
            assert abs(got - sum(float(logprobs[i - 1, ids[i]]) for i in range(len(ids) - n, len(ids)))) <= TOL


@pytest.mark.parametrize("name", ["gptj", "bloom"])
def test_runs_of_contexts_share_their_segment(models, tokenizer, name):
    """Items under long instructions: neighbouring contexts form runs whose shared segment is computed
    once; the scores equal the reference, with fewer tokens computed than one run per context, and
    a run resumed after any row gives the same scores to the bit."""
    from test_prefix_stack import stacked_records

    model = models[name]
    dataset = as_dataset(stacked_records(31))
    worst, job = worst_difference(model, tokenizer, dataset, path="cache")
    assert worst <= TOL
    runs = list(job.iter_packs())
    assert any(len(run) > 1 and run[0].segment > len(job.preface) for run in runs)
    own = sum(batch.n_tokens for run in runs for batch in run)  # a run's segment counted on its first batch
    alone = own + sum((len(run) - 1) * (run[0].segment - len(job.preface)) for run in runs if run[0].segment)
    assert job.stats.unique_tokens - job.stats.preface_tokens == own < alone
    whole = {r["index"]: r["class_logprobs"] for r in ScoringJob(model, tokenizer, dataset, path="cache").results()}
    for skipped in ({0, 1, 2}, {3, 4}):
        resumed = ScoringJob(model, tokenizer, dataset, path="cache", skip_indexes=skipped)
        for result in resumed.results():
            assert result["class_logprobs"] == whole[result["index"]]
