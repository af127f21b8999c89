"""Layer-streamed scoring timed against resident scoring and against its two floors.

The model is a random-init OPT written to disk as safetensors, one shard per decoder layer
(:func:`write_random_checkpoint`), so streaming reads it the way it reads a real checkpoint.

- PCIe floor: the model's bytes ÷ the host→device bandwidth measured here (pinned memory); the
  weights must cross at least once per group of packs.
- FLOP floor: as in :mod:`invscale.benchmark.run` (body params × unique tokens plus the head on
  answer tokens, over a matrix product timed in the same run).

The streamed run is timed after a warm-up on the first few rows (kernel compilation), and its
peak device memory (``torch.cuda.max_memory_allocated``) is set against the budget.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from invscale.benchmark.run import TOLERANCE, flop_floor, matmul_peak_flops, timed
from invscale.benchmark.workload import opt_config
from invscale.data import Dataset
from invscale.scoring.checkpoint import INDEX
from invscale.scoring.scorer import ScoringJob
from invscale.scoring.streamed import StreamedModel

WARM_UP_ROWS = 8


def write_random_checkpoint(shape: str, directory: str | Path, dtype: torch.dtype, seed: int = 0,
                            device: str | torch.device = "cpu") -> Path:
    """A random-init OPT of ``shape`` saved in ``directory``: config, one safetensors shard per
    decoder layer and one for the rest, with an index. Tensors are made one at a time on
    ``device`` (normal(0, 0.02) weights, unit norm scales, zero biases, as OPT initialises), so
    the whole model is never in memory."""
    from safetensors.torch import save_file
    from transformers import OPTForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = opt_config(shape)
    with torch.device("meta"):
        skeleton = OPTForCausalLM(config)
    generator = torch.Generator(device=device).manual_seed(seed)
    shards: dict[str, list[tuple[str, torch.Size]]] = {}
    for name, parameter in skeleton.named_parameters():  # the tied LM head is listed once, as the embedding
        parts = name.split(".")
        shard = f"layer-{int(parts[parts.index('layers') + 1]):03d}.safetensors" if "layers" in parts else "rest.safetensors"
        shards.setdefault(shard, []).append((name, parameter.shape))
    weight_map, total = {}, 0
    for shard, entries in shards.items():
        tensors = {}
        for name, tensor_shape in entries:
            if name.endswith("bias"):
                tensor = torch.zeros(tensor_shape, dtype=dtype)
            elif "layer_norm" in name:
                tensor = torch.ones(tensor_shape, dtype=dtype)
            else:
                tensor = (torch.randn(tensor_shape, generator=generator, device=device) * 0.02).to("cpu", dtype)
            tensors[name] = tensor
            weight_map[name] = shard
            total += tensor.nbytes
        save_file(tensors, directory / shard, metadata={"format": "pt"})
    (directory / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(directory)
    return directory


def host_to_device_bandwidth(device: torch.device, n_bytes: int = 2**30, repeats: int = 5) -> float | None:
    """Bytes/s of a pinned host → ``device`` copy (median of ``repeats``); None off CUDA."""
    if device.type != "cuda":
        return None
    host = torch.empty(n_bytes, dtype=torch.uint8).pin_memory()
    target = torch.empty(n_bytes, dtype=torch.uint8, device=device)
    seconds = []
    for _ in range(repeats + 1):  # the first copy warms up
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(host, non_blocking=True)
        end.record()
        end.synchronize()
        seconds.append(start.elapsed_time(end) / 1000)
    return n_bytes / sorted(seconds[1:])[len(seconds[1:]) // 2]


def _scores(job: ScoringJob) -> dict[int, list[float]]:
    return {r["index"]: r["class_logprobs"] for r in job.results()}


def _timed_scores(job: ScoringJob, device: torch.device) -> tuple[dict[int, list[float]], float, float | None]:
    """(scores, seconds, peak GiB allocated on CUDA or None) of one whole run."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    scores, seconds = timed(lambda: _scores(job), device)
    return scores, seconds, torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def run_streaming_benchmark(directory: str | Path, tokenizer, dataset: Dataset, dtype: torch.dtype,
                            device: torch.device, budget: int | None = None, offload: str = "disk",
                            max_tokens_per_pack: int | None = None, resident: bool = True) -> dict:
    """Score ``dataset`` with the checkpoint in ``directory`` streamed under ``budget`` bytes
    (default: a third of the model's bytes; ``offload`` disk: layers read from the shards per
    group; cpu: kept in host memory after the first read), then resident unless ``resident`` is
    False; figures as a dict."""
    streamed_scores, figures = _streamed_run(directory, tokenizer, dataset, dtype, device, budget, offload,
                                             max_tokens_per_pack)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the streamed model is gone; its cached blocks go too
    if resident:
        resident_scores, seconds, peak = _resident_run(directory, tokenizer, dataset, dtype, device,
                                                       max_tokens_per_pack)
        difference = max(abs(a - b) for index, values in resident_scores.items()
                         for a, b in zip(values, streamed_scores[index]))
        figures["resident"] = {"seconds": seconds, "peak_gib": peak}
        figures["streamed_over_resident"] = figures["streamed"]["seconds"] / seconds
        figures["max_abs_diff_vs_resident"] = difference
        figures["agrees"] = difference <= TOLERANCE[dtype]
    return figures


def _warm_up_rows(dataset: Dataset) -> Dataset:
    return dataclasses.replace(dataset, rows=dataset.rows[:WARM_UP_ROWS])


def _streamed_run(directory, tokenizer, dataset: Dataset, dtype: torch.dtype, device: torch.device,
                  budget: int | None, offload: str, max_tokens_per_pack: int | None) -> tuple[dict, dict]:
    """(scores, figures) of the streamed run, with both floors."""
    streamed = StreamedModel(directory, dtype, device, keep_in_host=offload == "cpu")
    model_bytes = sum(p.numel() for p in streamed.model.parameters()) * torch.finfo(dtype).bits // 8
    budget = model_bytes // 3 if budget is None else budget

    def job(rows: Dataset) -> ScoringJob:
        return ScoringJob(None, tokenizer, rows, max_tokens_per_pack=max_tokens_per_pack, streamed=streamed,
                          memory_budget=budget)

    _scores(job(_warm_up_rows(dataset)))
    timed_job = job(dataset)
    scores, seconds, peak = _timed_scores(timed_job, device)
    bandwidth = host_to_device_bandwidth(device)
    floor_seconds, unique_tokens = flop_floor(streamed.model, timed_job, matmul_peak_flops(dtype, device))
    pcie_floor = model_bytes / bandwidth if bandwidth else None
    times = timed_job.stream_times
    return scores, {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."), "offload": offload, "items": len(dataset.rows),
        "unique_tokens": unique_tokens, "model_gib": model_bytes / 2**30, "budget_gib": budget / 2**30,
        "host_to_device_gb_per_s": bandwidth / 1e9 if bandwidth else None,
        "pcie_floor_seconds": pcie_floor, "flop_floor_seconds": floor_seconds,
        "streamed": {"seconds": seconds, "over_bound": seconds / max(floor_seconds, pcie_floor or 0.0),
                     "groups": len(timed_job.groups), "load_seconds": times.load, "compute_seconds": times.compute,
                     "peak_gib": peak, "within_budget": None if peak is None else peak * 2**30 <= budget},
    }


def _resident_run(directory, tokenizer, dataset: Dataset, dtype: torch.dtype, device: torch.device,
                  max_tokens_per_pack: int | None) -> tuple[dict, float, float | None]:
    """(scores, seconds, peak GiB) with the whole model loaded on ``device``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, device_map=str(device)).eval()

    def job(rows: Dataset) -> ScoringJob:
        return ScoringJob(model, tokenizer, rows, max_tokens_per_pack=max_tokens_per_pack)

    _scores(job(_warm_up_rows(dataset)))
    return _timed_scores(job(dataset), device)
