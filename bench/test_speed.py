"""pytest-benchmark timings of each scoring method, with the code ``invscale bench`` runs.

    pytest bench/ --benchmark-only [--shape opt-1.3b --items 256 --prompt-len 256 ...]

Each method runs once untimed first (warm-up, compilation, autotuning), and those log-probs are
checked against the per-option baseline (dtype tolerance) before any timing.
"""

import pytest
import torch

from invscale.benchmark import run as bench_run
from invscale.scoring.scorer import ScoringJob


def flat(rows):
    return [lp for row in rows for lp in row]


@pytest.fixture(scope="session")
def per_option(workload):
    """Baseline A's per-option log-probs on the workload (computed once)."""
    model, tokenizer, dataset = workload
    return flat(bench_run.method_runner("hf-per-option", model, tokenizer, dataset)())


@pytest.fixture(scope="session")
def floor(workload):
    """(FLOP floor seconds, unique tokens) of the workload on this device."""
    model, tokenizer, dataset = workload
    plan = ScoringJob(model, tokenizer, dataset)
    return bench_run.flop_floor(model, plan, bench_run.matmul_peak_flops(model.dtype, model.device))


@pytest.mark.parametrize("method", bench_run.METHODS)
def test_method_speed(benchmark, workload, per_option, floor, method):
    model, tokenizer, dataset = workload
    if method not in bench_run.available_methods(model.device):
        pytest.skip(f"{method} cannot run on {model.device.type} here")
    run = bench_run.method_runner(method, model, tokenizer, dataset)
    bench_run.agreement({"hf-per-option": per_option, method: flat(run())}, model.dtype)

    def timed_once():
        run()
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(timed_once, rounds=3)
    floor_seconds, unique_tokens = floor
    benchmark.extra_info.update(unique_tokens=unique_tokens, floor_seconds=floor_seconds)
