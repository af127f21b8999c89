"""GFLOP/s of one linear layer on CPU, each way the scorer could compute it, interleaved.

    python bench/cpu_linear_rates.py [--rows 32,256,1024] [--rounds 5] [--json F]

For SmolLM2-135M's and OPT-1.3B's layer shapes: float32 through ``F.linear`` (MKL) and through
:func:`invscale.kernels.cpu_linear.linear` (oneDNN, with its weight packed where packing is
available); bfloat16 through ``F.linear`` and through ``cpu_linear.linear`` (oneDNN's bfloat16
product where the CPU has one, else widened to float32 through a held :class:`Scratch`), and
where the CPU widens, widened into a fresh float32 copy of the weight at every call. Each
round times every way once (median of three calls after a warm-up); the table gives the median
over rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from invscale.kernels import cpu_linear

SHAPES = {"smollm2 up": (576, 1536), "smollm2 down": (1536, 576), "smollm2 head": (576, 49152),
          "opt-1.3b fc1": (2048, 8192), "opt-1.3b fc2": (8192, 2048), "opt-1.3b q": (2048, 2048)}


def seconds(call) -> float:
    call()
    times = []
    for _ in range(3):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def ways(x: torch.Tensor, weight: torch.Tensor) -> dict:
    """The calls to time for one shape: name → zero-argument function."""
    half_x, half_w = x.bfloat16(), weight.bfloat16()
    packed = cpu_linear.pack(weight) if cpu_linear.packing_available() else None
    half_packed = cpu_linear.pack(half_w) if cpu_linear.computes(torch.bfloat16) else None
    scratch = cpu_linear.Scratch()
    calls = {"float32 F.linear": lambda: F.linear(x, weight),
             "float32 cpu_linear": lambda: cpu_linear.linear(x, weight, None, packed),
             "bfloat16 F.linear": lambda: F.linear(half_x, half_w),
             "bfloat16 cpu_linear": lambda: cpu_linear.linear(half_x, half_w, None, half_packed, scratch)}
    if cpu_linear.widens(torch.bfloat16):
        calls["bfloat16 widened, fresh copy"] = lambda: cpu_linear.widened(half_x, half_w)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="32,256,1024")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; bfloat16 "
          f"{'through oneDNN' if cpu_linear.computes(torch.bfloat16) else 'widened to float32' if cpu_linear.widens(torch.bfloat16) else 'F.linear'}")
    results = []
    with torch.no_grad():
        for rows in map(int, args.rows.split(",")):
            for name, (d_in, d_out) in SHAPES.items():
                calls = ways(torch.randn(rows, d_in), torch.randn(d_out, d_in) * d_in ** -0.5)
                timed = {way: [] for way in calls}
                for _ in range(args.rounds):
                    for way, call in calls.items():
                        timed[way].append(seconds(call))
                flop = 2 * rows * d_in * d_out
                rates = {way: flop / statistics.median(t) / 1e9 for way, t in timed.items()}
                results.append({"rows": rows, "shape": name, "d_in": d_in, "d_out": d_out, "gflops": rates})
                print(f"{rows:>5} {name:<14}" + "".join(f"  {way} {rate:6.0f}" for way, rate in rates.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
