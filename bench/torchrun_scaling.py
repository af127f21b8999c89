"""Weak scaling of data-parallel scoring on torchrun: the same rows per process, 1 … N processes.

    python bench/torchrun_scaling.py --model DIR [--task gambling] [--rows-per-process 100]
        [--processes 1,2] [--threads 1] [--repeats 3] [--json out.json]

For each process count P it generates ``P × rows`` rows (``invscale generate TASK --seed 0``)
and times ``torchrun --standalone --nproc-per-node P -m invscale score`` on them (whole command:
start-up, model load, scoring, writing), ``--threads`` torch threads per process, interleaved
``--repeats`` times; it reports the median and the weak-scaling efficiency t(1) ÷ t(P) (1.0 is
perfect: P times the rows in the same time). On a CPU the processes share the machine's cores and
memory bandwidth, so give each its own core (P × threads ≤ cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(task: str, rows: int, path: Path) -> None:
    """Write ``rows`` rows of ``task`` (seed 0) to ``path``."""
    subprocess.run([sys.executable, "-m", "invscale", "generate", task, "--n", str(rows), "--seed", "0",
                    "--out", str(path)], check=True, capture_output=True)


def timed_score(processes: int, data: Path, model: str, out: Path, threads: int) -> float:
    """Seconds for one whole ``invscale score`` on ``processes`` torchrun processes."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    command = [shutil.which("torchrun") or "torchrun", "--standalone", f"--nproc-per-node={processes}", "-m",
               "invscale", "score", str(data), "--model", model, "--device", "cpu", "--overwrite", "--out", str(out)]
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", default="gambling")
    parser.add_argument("--rows-per-process", type=int, default=100)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    with tempfile.TemporaryDirectory(prefix="invscale-scaling-") as folder:
        files = {}
        for processes in counts:
            files[processes] = Path(folder) / f"{args.task}-{processes}.jsonl"
            generate(args.task, processes * args.rows_per_process, files[processes])
        runs = {processes: [] for processes in counts}
        for _ in range(args.repeats):  # interleaved, so drift in the machine's speed hits every count alike
            for processes in counts:
                runs[processes].append(timed_score(processes, files[processes], args.model,
                                                   Path(folder) / f"out-{processes}.jsonl", args.threads))
    medians = {processes: statistics.median(times) for processes, times in runs.items()}
    rows = [{"processes": processes, "rows": processes * args.rows_per_process, "seconds": runs[processes],
             "median_s": medians[processes], "efficiency": medians[counts[0]] / medians[processes]}
            for processes in counts]
    for row in rows:
        print(f"{row['processes']} process(es), {row['rows']} rows: {row['median_s']:.1f} s "
              f"(runs {', '.join(f'{t:.1f}' for t in row['seconds'])}), efficiency {row['efficiency']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"task": args.task, "model": args.model, "threads": args.threads,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
