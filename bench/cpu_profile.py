"""Where a CPU scoring run spends its time: attention, matmuls, the LM head, the rest, Python.

    python bench/cpu_profile.py --model DIR --data FILE [--rows 200] [--attention sdpa,segments] [--dtype D] [--json F]
    python bench/cpu_profile.py --model DIR --samples LM_EVAL_OUT ...   # lm-eval's logged requests instead

Runs ``ScoringJob`` (or, with ``--samples``, ``score_token_sequences`` on the loglikelihood
requests of an lm-eval run's logged samples, tokenized as lm-eval's HF backend tokenizes them) under torch.profiler with the tree attention backend and the LM head wrapped in
labelled ranges, once per backend (after a warm-up run), and splits the wall time into: tree
attention (everything inside the backend call, masks included), the LM head (answer rows only),
other matrix products (the model's linear layers), other tensor operators, and what is left:
Python and framework overhead. It also measures the rate of the model's own linear layers alone
(each run once, in the model's order, on ``--linear-rows`` random rows, routed as the scorer routes
them; median of five sweeps) and gives the time those layers alone would take for the tokens the
run computed at that rate, and that time's share of the wall time of a run without the profiler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from invscale.data import read_dataset
from invscale.kernels import cpu_linear
from invscale.models import load_model
from invscale.scoring import attention, runner
from invscale.scoring.runner import linear_pack_budget
from invscale.scoring.scorer import ScoringJob, score_token_sequences

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
           "mkldnn::_linear_pointwise")  # the last: the linear layers on CPU (invscale.kernels.cpu_linear)
OPERATORS = ("aten::", "mkldnn::")


def labelled(function, label):
    def call(*args, **kwargs):
        with record_function(label):
            return function(*args, **kwargs)
    return call


def breakdown(score: Callable[[str], int], backend: str) -> dict:
    """Seconds by category for one scoring run with ``backend`` (``score(backend)`` runs it and
    returns the tokens it computed)."""
    original_backend = attention._BACKENDS[backend]
    original_head = runner.PackRunner.__init__

    def init(self, *args, **kwargs):
        original_head(self, *args, **kwargs)
        self.answer_logprobs = labelled(self.answer_logprobs, "invscale::head")

    attention._BACKENDS[backend] = labelled(original_backend, "invscale::attention")
    runner.PackRunner.__init__ = init
    try:
        score(backend)  # warm-up
        began = time.perf_counter()
        score(backend)
        plain_wall = time.perf_counter() - began  # without the profiler's own cost
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            began = time.perf_counter()
            tokens = score(backend)
            wall = time.perf_counter() - began
    finally:
        attention._BACKENDS[backend] = original_backend
        runner.PackRunner.__init__ = original_head
    events = profiler.key_averages()
    ranges = {e.key: e.cpu_time_total / 1e6 for e in events if e.key.startswith("invscale::")}
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / 1e6
    operators = sum(e.self_cpu_time_total for e in events if e.key.startswith(OPERATORS)) / 1e6
    attention_s, head_s = ranges.get("invscale::attention", 0.0), ranges.get("invscale::head", 0.0)
    inner = _inner_matmul(profiler)
    return {"backend": backend, "wall_s": wall, "unprofiled_wall_s": plain_wall, "attention_s": attention_s, "head_s": head_s,
            "matmul_s": matmul - inner, "other_ops_s": operators - matmul - (attention_s + head_s - inner),
            "python_and_overhead_s": wall - operators, "tokens": tokens}


def _inner_matmul(profiler) -> float:
    """Seconds of matrix products run inside the attention and head ranges (counted there)."""
    total = 0.0
    for event in profiler.events():
        if event.name in MATMULS:
            parent = event.cpu_parent
            while parent is not None and not parent.name.startswith("invscale::"):
                parent = parent.cpu_parent
            if parent is not None:
                total += event.self_cpu_time_total / 1e6
    return total


def linear_rate(model, rows: int) -> tuple[float, int]:
    """(GFLOP/s of the body's linear layers alone on ``rows`` rows, multiply-adds per token in them)."""
    linears = [m for m in model.base_model.modules() if isinstance(m, torch.nn.Linear)]
    dtype = next(model.parameters()).dtype
    inputs = {m.in_features: torch.randn(rows, m.in_features, dtype=dtype) for m in linears}
    per_token = sum(m.in_features * m.out_features for m in linears)
    sweeps = []
    with torch.no_grad(), cpu_linear.routed(model.base_model, linear_pack_budget(torch.device("cpu"))):
        for _ in range(6):
            began = time.perf_counter()
            for m in linears:
                m(inputs[m.in_features])
            sweeps.append(time.perf_counter() - began)
    return 2 * per_token * rows / statistics.median(sweeps[1:]) / 1e9, per_token


def lm_eval_sequences(model: str, samples: str) -> list[tuple[tuple[int, ...], int]]:
    """(tokens, n_target) of every loglikelihood request logged under ``samples``, tokenized by
    lm-eval's HF backend for ``model``."""
    from lm_eval.models.huggingface import HFLM

    from mmlu_like import requests_of

    lm = HFLM(pretrained=model, device="cpu", dtype="float32")
    sequences = []
    for context, continuation in requests_of(samples):
        context_tokens, continuation_tokens = lm._encode_pair(context, continuation)
        sequences.append((tuple(context_tokens) + tuple(continuation_tokens), len(continuation_tokens)))
    return sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a task file, scored by ScoringJob")
    source.add_argument("--samples", help="an lm-eval output folder with logged samples: its loglikelihood requests")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--attention", default="sdpa,segments")
    parser.add_argument("--max-tokens-per-pack", type=int)
    parser.add_argument("--linear-rows", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", help="the model's dtype (bfloat16, say)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    loaded = load_model(args.model, dtype=args.dtype, device="cpu")
    if args.samples:
        sequences = lm_eval_sequences(args.model, args.samples)

        fewest = len({tokens[:i] for tokens, _ in sequences for i in range(1, len(tokens))})

        def score(backend):
            score_token_sequences(loaded.model, sequences, args.max_tokens_per_pack, backend=backend, kernels="torch")
            return fewest  # what the trie computes (bench/mmlu_like.py tokens checks it)
    else:
        dataset = read_dataset(args.data)
        dataset.rows = dataset.rows[:args.rows]

        def score(backend):
            job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=args.max_tokens_per_pack,
                             backend=backend, kernels="torch")
            list(job.results())
            return job.stats.unique_tokens
    rate, per_token = linear_rate(loaded.model, args.linear_rows)
    rows = [breakdown(score, backend) for backend in args.attention.split(",")]
    for row in rows:
        row["linear_gflops"] = rate
        row["linear_alone_s"] = 2 * per_token * row["tokens"] / rate / 1e9
        row["linear_share"] = row["linear_alone_s"] / row["unprofiled_wall_s"]
    for row in rows:
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "rows": args.rows, "dtype": args.dtype, "threads": torch.get_num_threads(),
                                         "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
