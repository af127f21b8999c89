"""The cache path against the trie and against lm-evaluation-harness's HF backend, scoring alone.

    pip install -e '.[lm-eval]'
    python bench/cache_path.py --model smollm2-135m [--rows 200] [--rounds 3] [--json out.json]

For each workload (the first ``--rows`` rows of the seed data's gambling.csv and triviaMod.csv, and
``invscale generate triviamod --n ROWS --seed 0``; see bench/cpu_peers.py) it times, interleaved,
``--rounds`` times each, on a model loaded once: invscale's ``ScoringJob`` with ``path="trie"`` and
with ``path="cache"``, and lm-eval's ``HFLM.loglikelihood`` at ``--hf-batch`` (16, its best on
these rows in earlier runs). It reports the medians, the tokens each computes (invscale's own
count; lm-eval's from the same plan: each row's context and option once, the one-token options of
a context together) and the largest |difference| of any class log-prob between the three.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from cpu_peers import Scorers, workloads


def job_run(scorers: Scorers, path: Path, scoring_path: str) -> tuple[float, dict, object]:
    """(seconds, class log-probs by row, the job) for invscale on ``scoring_path``."""
    from invscale.data import read_dataset
    from invscale.scoring.scorer import ScoringJob

    dataset = read_dataset(str(path))
    began = time.perf_counter()
    job = ScoringJob(scorers.invscale.model, scorers.invscale.tokenizer, dataset, path=scoring_path)
    results = {r["index"]: r["class_logprobs"] for r in job.results()}
    return time.perf_counter() - began, results, job


def largest_difference(a: dict, b: dict) -> float:
    return max(abs(x - y) for index in a for x, y in zip(a[index], b[index]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hf-batch", type=int, default=16)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    scorers = Scorers(arguments.model)
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, path in workloads(arguments.rows, Path(folder)).items():
            times = {"trie": [], "cache": [], "hf": []}
            for _ in range(arguments.rounds):
                seconds, trie, trie_job = job_run(scorers, path, "trie")
                times["trie"].append(seconds)
                seconds, cache, cache_job = job_run(scorers, path, "cache")
                times["cache"].append(seconds)
                seconds, hf = scorers.lm_eval_run(path, arguments.hf_batch)
                times["hf"].append(seconds)
            report[name] = {
                "median_seconds": {kind: statistics.median(runs) for kind, runs in times.items()},
                "seconds": times,
                "tokens": {"trie": trie_job.stats.unique_tokens, "cache": cache_job.stats.unique_tokens,
                           "hf": trie_job.stats.hf_tokens, "per_option": trie_job.stats.naive_tokens},
                "cache_mode": cache_job.path.mode,
                "max_abs_difference": {"cache_vs_trie": largest_difference(cache, trie),
                                       "cache_vs_hf": largest_difference(cache, hf)},
            }
            print(json.dumps({name: report[name]}), flush=True)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
