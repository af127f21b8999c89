"""Layer-streamed scoring equals resident scoring, honours its memory budget, reads any shard layout."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from invscale.cli import app
from invscale.models import load_model
from invscale.scoring.scorer import ScoringJob
from invscale.scoring import attention
from invscale.scoring.streamed import StreamBudgetError, StreamedModel, StreamedRunner, plan_groups
from random_data import as_dataset, random_classification
from reference import max_abs_diff, reference_logprob

TOL = 1e-5


def resave(source, target, max_shard_size):
    """The checkpoint at ``source`` saved again with ``max_shard_size`` (None: one file)."""
    loaded = load_model(source)
    loaded.model.save_pretrained(target, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    loaded.tokenizer.save_pretrained(target)
    return str(target)


def scores(job):
    return {r["index"]: r["class_logprobs"] for r in job.results()}


@pytest.mark.parametrize("checkpoint", ["opt-plain", "opt-350m-shape", "llama-gqa3"])
@pytest.mark.parametrize("shards", [None, "30KB"])
def test_streamed_equals_resident(checkpoint_dirs, loaded_models, tmp_path, checkpoint, shards):
    directory = resave(checkpoint_dirs[checkpoint], tmp_path / "ckpt", shards)
    if shards:
        weight_map = json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())["weight_map"]
        layer_files = {}
        for name, shard in weight_map.items():
            if ".layers.0." in name:
                layer_files.setdefault("layer0", set()).add(shard)
        assert len(set(weight_map.values())) > 3 and len(layer_files["layer0"]) > 1, "a layer spans several shards"
    loaded = loaded_models[checkpoint]
    dataset = as_dataset(random_classification(31, n_rows=14))
    expected = scores(ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=120))
    streamed = StreamedModel(directory, torch.float32, torch.device("cpu"))
    assert all(p.is_meta for layer in streamed.layers for p in layer.parameters()), "no layer stays resident"
    job = ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=120, streamed=streamed)
    got = scores(job)
    assert job.stream_times.layers == len(streamed.layers)
    for index, values in expected.items():
        assert max(abs(a - b) for a, b in zip(values, got[index])) <= TOL


@pytest.mark.parametrize("checkpoint", ["opt-plain", "llama-gqa2"])
def test_streamed_bfloat16_equals_resident_bfloat16(checkpoint_dirs, checkpoint):
    """In 16-bit the streamed model holds what a resident load holds (bf16 weights, fp32 rotary
    frequencies), so it gives the same scores, not merely close ones."""
    resident = load_model(checkpoint_dirs[checkpoint], dtype="bfloat16", device="cpu")
    streamed = StreamedModel(checkpoint_dirs[checkpoint], torch.bfloat16, torch.device("cpu"))
    assert ({n: b.dtype for n, b in streamed.model.named_buffers()}
            == {n: b.dtype for n, b in resident.model.named_buffers()})
    dataset = as_dataset(random_classification(35, n_rows=10))
    expected = scores(ScoringJob(resident.model, resident.tokenizer, dataset, max_tokens_per_pack=150, backend="sdpa"))
    got = scores(ScoringJob(None, resident.tokenizer, dataset, max_tokens_per_pack=150, backend="sdpa",
                            streamed=streamed))
    for index, values in expected.items():
        assert max(abs(a - b) for a, b in zip(values, got[index])) <= 1e-6


def test_budget_splits_groups_and_is_honoured(checkpoint_dirs, loaded_models):
    loaded = loaded_models["opt-350m-shape"]
    dataset = as_dataset(random_classification(32, n_rows=30))
    expected = scores(ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=100))
    streamed = StreamedModel(checkpoint_dirs["opt-350m-shape"], torch.float32, torch.device("cpu"))
    roomy = ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=100, streamed=streamed)
    assert len(roomy.groups) == 1
    budget = 1_100_000
    job = ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=100, streamed=streamed, memory_budget=budget)
    assert len(job.groups) > 1 and sorted(i for g in job.groups for i in g) == list(range(len(job.packs)))
    got = scores(job)
    assert job.stream_times.layers == len(streamed.layers) * len(job.groups)
    for index, values in expected.items():
        assert max(abs(a - b) for a, b in zip(values, got[index])) <= TOL
    runner = StreamedRunner(streamed)
    for group in job.groups:
        runner.run(job.preface, [job.packs[i] for i in group])
    assert 0 < runner.peak_bytes <= budget
    with pytest.raises(StreamBudgetError, match="too small"):
        ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=100, streamed=streamed, memory_budget=300_000)


def test_groups_follow_the_attention_backend(checkpoint_dirs):
    """Dense masks and fp32 scores are budgeted where the backend may make them (sdpa; flex off
    CUDA runs eagerly); the block-sparse kernels need neither, so one budget holds more packs."""
    streamed = StreamedModel(checkpoint_dirs["opt-plain"], torch.float32, torch.device("cpu"))
    sizes, preface = [300] * 12, 20
    groups = {backend: len(plan_groups(streamed, preface, sizes, 3_000_000, backend))
              for backend in ("sdpa", "flex", "triton")}
    assert groups["sdpa"] == groups["flex"] > groups["triton"] == 1
    with pytest.raises(StreamBudgetError):
        plan_groups(streamed, preface, sizes, 2_000_000, "sdpa")
    assert len(plan_groups(streamed, preface, sizes, 2_000_000, "triton")) == 1
    heads = streamed.model.config.num_attention_heads
    assert attention.attention_memory("sdpa", torch.device("cuda"), 300, 320, heads) == (300 * 320, 300 * 320 * heads * 4)
    assert attention.attention_memory("flex", torch.device("cuda"), 300, 320, heads) == (0, 0)
    assert attention.attention_memory("flex", torch.device("cpu"), 300, 320, heads) == (300 * 320, 300 * 320 * heads * 4)


def test_score_command_streams_on_request(checkpoint_dirs, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(33, n_rows=8)))
    runner = CliRunner()
    outs = {}
    for offload in ("none", "disk"):
        outs[offload] = tmp_path / f"{offload}.jsonl"
        result = runner.invoke(app, ["score", str(data), "--model", checkpoint_dirs["llama-gqa2"], "--out",
                                     str(outs[offload]), "--offload", offload])
        assert result.exit_code == 0, result.output
    assert "streamed layers" in result.stdout and "reading weights" in result.stdout
    rows = {k: [json.loads(line) for line in v.read_text().splitlines()] for k, v in outs.items()}
    for a, b in zip(rows["none"], rows["disk"]):
        assert max(abs(x - y) for x, y in zip(a["class_logprobs"], b["class_logprobs"])) <= TOL
    tight = runner.invoke(app, ["score", str(data), "--model", checkpoint_dirs["llama-gqa2"], "--out",
                                str(tmp_path / "t.jsonl"), "--offload", "disk", "--gpu-memory", "100KiB"])
    assert tight.exit_code == 2 and "--gpu-memory 100.0 KiB is too small" in tight.output and "Traceback" not in tight.output
    bad = runner.invoke(app, ["score", str(data), "--out", str(tmp_path / "b.jsonl"), "--gpu-memory", "lots"])
    assert bad.exit_code == 2 and "--gpu-memory lots: write a size" in bad.output
    copied = tmp_path / "no-safetensors"
    shutil.copytree(checkpoint_dirs["opt-plain"], copied)
    for f in copied.glob("*.safetensors"):
        f.unlink()
    missing = runner.invoke(app, ["score", str(data), "--model", str(copied), "--out", str(tmp_path / "m.jsonl"),
                                  "--offload", "disk"])
    assert missing.exit_code == 2 and "cannot stream" in missing.output


@pytest.mark.parametrize("keep_in_host", [False, True])
def test_cpu_offload_reads_the_checkpoint_once(checkpoint_dirs, loaded_models, monkeypatch, keep_in_host):
    loaded = loaded_models["opt-350m-shape"]
    dataset = as_dataset(random_classification(34, n_rows=30))
    expected = scores(ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=100))
    streamed = StreamedModel(checkpoint_dirs["opt-350m-shape"], torch.float32, torch.device("cpu"),
                             keep_in_host=keep_in_host)
    reads = []
    real_get = streamed.checkpoint.get
    monkeypatch.setattr(streamed.checkpoint, "get", lambda name: reads.append(name) or real_get(name))
    job = ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=100, streamed=streamed,
                     memory_budget=1_100_000)
    got = scores(job)
    layer_tensors = sum(len(streamed.layer_names(i)) for i in range(len(streamed.layers)))
    assert len(job.groups) > 1
    assert len(reads) == layer_tensors * (1 if keep_in_host else len(job.groups))
    for index, values in expected.items():
        assert max(abs(a - b) for a, b in zip(values, got[index])) <= TOL


def test_streamed_targets_predicted_by_the_preface(checkpoint_dirs, loaded_models):
    """Whole-string tokenization of rows that share their whole prompt: targets predicted by the
    preface's last token come from the streamed preface's final hidden states."""
    loaded = loaded_models["llama-gqa2"]
    records = [{"prompt": "Question: which is it?\nAnswer:", "classes": [" yes", " no"], "answer_index": i % 2}
               for i in range(6)]
    dataset = as_dataset(records)
    expected = scores(ScoringJob(loaded.model, loaded.tokenizer, dataset, splice=False))
    streamed = StreamedModel(checkpoint_dirs["llama-gqa2"], torch.float32, torch.device("cpu"))
    job = ScoringJob(None, loaded.tokenizer, dataset, streamed=streamed, splice=False, max_tokens_per_pack=4,
                     memory_budget=10**9)
    assert any((pack.pair_node < 0).any() for pack in job.packs)
    for index, values in scores(job).items():
        assert max(abs(a - b) for a, b in zip(values, expected[index])) <= TOL


def test_a_checkpoint_with_its_own_head_streams_as_it_loads(checkpoint_dirs, tmp_path):
    """A tied config whose checkpoint still holds a distinct lm_head: the resident load keeps that
    head, so streaming must too (not tie it to the embeddings)."""
    from safetensors.torch import load_file, save_file

    directory = tmp_path / "own-head"
    shutil.copytree(checkpoint_dirs["opt-plain"], directory)
    tensors = load_file(directory / "model.safetensors")
    embeddings = tensors["model.decoder.embed_tokens.weight"]
    tensors["lm_head.weight"] = torch.randn(embeddings.shape, generator=torch.Generator().manual_seed(5)) * 0.1
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    resident = load_model(str(directory))
    assert not torch.equal(resident.model.lm_head.weight, resident.model.get_input_embeddings().weight)
    dataset = as_dataset(random_classification(36, n_rows=8))
    expected = scores(ScoringJob(resident.model, resident.tokenizer, dataset, max_tokens_per_pack=120))
    streamed = StreamedModel(directory, torch.float32, torch.device("cpu"))
    got = scores(ScoringJob(None, resident.tokenizer, dataset, max_tokens_per_pack=120, streamed=streamed))
    for index, values in expected.items():
        assert max(abs(a - b) for a, b in zip(values, got[index])) <= TOL


@pytest.mark.parametrize("pack_tokens, memory_budget, stack_tokens, backend", [
    (24, None, None, "segments"), (24, 1_000_000, None, "segments"), (48, 1_200_000, None, "sdpa"),
    (24, 1_500_000, None, "flex"), (24, 2_000_000, 20, "segments")])
def test_streamed_holds_the_stack_of_shared_prefixes(checkpoint_dirs, loaded_models, pack_tokens, memory_budget,
                                                     stack_tokens, backend):
    """Instructions longer than a pack, question stems shared by pairs of items, groups of packs cut
    anywhere in the stack: every shared prefix is run through the layers once per run, as resident
    scoring runs it, and the scores are the resident ones (and the reference's); a stack budget too
    small for the prefixes recomputes them in each pack, streamed as resident."""
    from test_prefix_stack import stacked_records

    loaded = loaded_models["llama-gqa3"]
    dataset = as_dataset(stacked_records(pack_tokens))
    resident = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=pack_tokens,
                          stack_tokens=stack_tokens, backend=backend)
    expected = scores(resident)
    streamed = StreamedModel(checkpoint_dirs["llama-gqa3"], torch.float32, torch.device("cpu"))
    job = ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=pack_tokens, streamed=streamed,
                     memory_budget=memory_budget, stack_tokens=stack_tokens, backend=backend)
    if stack_tokens is None:
        assert any(len(pack.stack) > 1 for pack in job.packs), "nested shared prefixes are held on the stack"
        assert job.stats.stack.refused == 0
    else:
        assert job.stats.stack.refused > 0 and all(sum(map(len, pack.stack)) <= stack_tokens for pack in job.packs)
    if memory_budget is not None:
        assert len(job.groups) > 2
        starts = [job.packs[group[0]] for group in job.groups[1:]]
        assert any(pack.stack for pack in starts), "a group begins on a stack held from the group before"
    got = scores(job)
    assert job.stream_times.tokens == job.stats.unique_tokens == resident.stats.unique_tokens
    if stack_tokens is None:  # see test_prefix_stack
        assert job.stats.fewest_tokens <= job.stats.unique_tokens <= 1.05 * job.stats.fewest_tokens
    for index, values in expected.items():  # these sums reach -100: float32 rounding grows with them
        assert max(abs(a - b) / max(1.0, abs(a) / 10) for a, b in zip(values, got[index])) <= TOL
    for row in dataset.rows[::4]:
        reference = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(got[row.index], reference) <= 1e-4
    if memory_budget is not None:
        runner = StreamedRunner(streamed, backend=backend, push_tokens=pack_tokens)
        for group in job.groups:
            runner.run(job.preface, [job.packs[i] for i in group])
        assert 0 < runner.peak_bytes <= memory_budget
