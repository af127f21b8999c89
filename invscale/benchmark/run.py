"""Run every method on one workload, check they agree, time them, and relate them to the FLOP floor.

Each method starts from the dataset rows (tokenizing is part of every method) and returns per-
option log-probs. Every method runs once untimed (warm-up, compilation, autotuning; its output is
what the agreement check compares), then ``repeats`` timed runs whose median is reported. On CUDA
the time is taken with device events; peak memory is the allocator's high-water mark during the
timed runs.

Floor = (2 × body params × unique tokens + 2 × vocab × d × answer tokens) ÷ measured peak, the
peak being a large matrix product in the run's dtype on the run's device, timed in the same run.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from invscale.benchmark.baselines import kv_reuse_logprobs, per_option_logprobs
from invscale.benchmark.workload import body_params
from invscale.data import Dataset
from invscale.kernels.launch import interpreting
from invscale.scoring.scorer import ScoringJob
from invscale.scoring.trie import tokens_computed

# largest |Δ| between a method's per-option log-prob and baseline A's that still counts as equal
TOLERANCE = {torch.float32: 1e-3, torch.float16: 0.25, torch.bfloat16: 0.5}
METHODS = ("hf-per-option", "hf-kv-reuse", "invscale-torch", "invscale-triton")


class BenchmarkMismatch(RuntimeError):
    """Two methods disagree on the log-probs beyond the dtype's tolerance."""


@dataclass
class MethodFigures:
    """One method's measurements on the workload."""

    method: str
    seconds: float
    items_per_s: float
    unique_tokens_per_s: float
    speedup_vs_per_option: float
    time_over_floor: float
    peak_memory_gib: float | None
    max_abs_diff_vs_per_option: float


def available_methods(device: torch.device) -> list[str]:
    """All methods that can run here (the Triton kernels need CUDA or the interpreter)."""
    return [m for m in METHODS if m != "invscale-triton" or device.type == "cuda" or interpreting()]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable, device: torch.device) -> tuple[object, float]:
    """(function's value, seconds), with device events on CUDA."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        value = function()
        end.record()
        end.synchronize()
        return value, start.elapsed_time(end) / 1000
    began = time.perf_counter()
    value = function()
    return value, time.perf_counter() - began


def matmul_peak_flops(dtype: torch.dtype, device: torch.device) -> float:
    """FLOP/s of a large square matrix product in ``dtype`` on ``device`` (median of several)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    _synchronize(device)
    seconds = statistics.median(timed(lambda: a @ b, device)[1] for _ in range(10))
    return 2 * n ** 3 / seconds


def flop_floor(model, plan: ScoringJob, peak_flops: float) -> tuple[float, int]:
    """(seconds, unique tokens) of ``plan``'s work at ``peak_flops``: 2 × body params per unique
    token plus the LM head on answer tokens."""
    unique_tokens = plan.stats.preface_tokens + tokens_computed(plan.plan())
    head = model.get_output_embeddings().weight
    return (2 * body_params(model) * unique_tokens + 2 * head.numel() * plan.stats.answer_tokens) / peak_flops, unique_tokens


def method_runner(method: str, model, tokenizer, dataset: Dataset, max_tokens_per_pack: int | None = None,
                  token_budget: int = 8192) -> Callable[[], list[list[float]]]:
    """A call that scores ``dataset`` from its rows by ``method``: per-option log-probs per row."""
    if method == "hf-per-option":
        return lambda: per_option_logprobs(model, tokenizer, dataset, token_budget)
    if method == "hf-kv-reuse":
        return lambda: kv_reuse_logprobs(model, tokenizer, dataset)
    kernels = method.removeprefix("invscale-")

    def run():
        job = ScoringJob(model, tokenizer, dataset, max_tokens_per_pack=max_tokens_per_pack, kernels=kernels)
        results = {r["index"]: r["class_logprobs"] for r in job.results()}
        return [results[row.index] for row in dataset.rows]
    return run


def agreement(outputs: dict[str, list[float]], dtype: torch.dtype) -> dict[str, float]:
    """Each method's largest |Δ| from ``outputs["hf-per-option"]`` (flat per-option log-probs).

    Raises :class:`BenchmarkMismatch` for the first beyond the dtype's tolerance."""
    baseline = outputs["hf-per-option"]
    differences = {m: max(abs(a - b) for a, b in zip(values, baseline)) for m, values in outputs.items()}
    tolerance = TOLERANCE[dtype]
    for method, difference in differences.items():
        if not difference <= tolerance:
            raise BenchmarkMismatch(f"{method} differs from hf-per-option by {difference:.3g} nats "
                                    f"(tolerance {tolerance:g} in {str(dtype).removeprefix('torch.')})")
    return differences


def run_benchmark(model, tokenizer, dataset: Dataset, methods: list[str], repeats: int = 1,
                  max_tokens_per_pack: int | None = None, token_budget: int = 8192,
                  log: Callable[[str], None] = lambda line: None) -> dict:
    """Figures for every method in ``methods`` (names from :data:`METHODS`), baseline A first;
    ``log`` gets a line as each method starts its warm-up and its timed runs.

    Raises :class:`BenchmarkMismatch` before any timing if a method's log-probs disagree."""
    device, dtype = model.device, model.dtype
    chosen = ["hf-per-option"] + [m for m in methods if m != "hf-per-option"]
    runners = {m: method_runner(m, model, tokenizer, dataset, max_tokens_per_pack, token_budget) for m in chosen}
    outputs = {}
    for number, method in enumerate(chosen, start=1):  # warm-up and agreement check
        log(f"[{number}/{len(chosen)}] {method}: warm-up and log-probs")
        began = time.perf_counter()
        outputs[method] = [lp for row in runners[method]() for lp in row]
        log(f"[{number}/{len(chosen)}] {method}: {time.perf_counter() - began:.1f} s")
    differences = agreement(outputs, dtype)

    plan = ScoringJob(model, tokenizer, dataset, max_tokens_per_pack=max_tokens_per_pack)
    peak = matmul_peak_flops(dtype, device)
    floor, unique_tokens = flop_floor(model, plan, peak)
    timings = {}  # method: (median seconds, peak GiB or None)
    for number, method in enumerate(chosen, start=1):
        log(f"[{number}/{len(chosen)}] {method}: timing {repeats} run(s)")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = statistics.median(timed(runners[method], device)[1] for _ in range(repeats))
        timings[method] = seconds, torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    baseline = timings["hf-per-option"][0]
    figures = [MethodFigures(method, seconds, len(dataset.rows) / seconds, unique_tokens / seconds, baseline / seconds,
                             seconds / floor, memory, differences[method])
               for method, (seconds, memory) in timings.items()]
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "dtype": str(dtype).removeprefix("torch."), "items": len(dataset.rows),
            "naive_tokens": plan.stats.naive_tokens, "unique_tokens": unique_tokens, "body_params": body_params(model),
            "fewest_tokens": plan.stats.fewest_tokens, "lm_eval_hf_tokens": plan.stats.hf_tokens,
            "peak_tflops": peak / 1e12, "floor_seconds": floor, "tolerance": TOLERANCE[dtype], "agreement_checked": True,
            "methods": [asdict(f) for f in figures]}
