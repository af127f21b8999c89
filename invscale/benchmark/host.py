"""Host-side cost of a scoring job: tokenizing, planning and building every pack, no model run.

What ``invscale bench --host-only`` measures: the work the CPU does beside the device (which, on a
GPU, must stay under the device's own time for the device never to wait), set against the FLOP
floor of the unique tokens for a reference model and device (OPT-1.3B on an H100 by default).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import torch

from invscale.data import Dataset
from invscale.scoring.scorer import ScoringJob
from invscale.scoring.trie import stack_growth

REFERENCE_PARAMS = 1.3e9  # OPT-1.3B
REFERENCE_PEAK_FLOPS = 790e12  # dense bf16 on an H100 SXM, as measured in bench/RESULTS.md


@dataclass
class ConfigOnly:
    """What a scoring job asks of a model before running it: its config and device."""

    config: object
    device: torch.device = torch.device("cuda")


def host_benchmark(tokenizer, config, dataset: Dataset, max_tokens_per_pack: int | None = None) -> dict:
    """Time a job's setup (checks, preface) and every pack's tokenizing, planning and building."""
    began = time.perf_counter()
    job = ScoringJob(ConfigOnly(config), tokenizer, dataset, max_tokens_per_pack=max_tokens_per_pack,
                     backend="sdpa", kernels="torch")
    setup = time.perf_counter() - began
    first_pack, unique, packs, held = None, job.stats.preface_tokens, 0, ()
    for pack in job.iter_packs():
        if first_pack is None:
            first_pack = time.perf_counter() - began
        unique += pack.n_tokens + stack_growth(held, pack.stack)
        held = pack.stack
        packs += 1
    host = time.perf_counter() - began
    floor = 2 * REFERENCE_PARAMS * unique / REFERENCE_PEAK_FLOPS
    return {
        "data": dataset.name, "rows": len(dataset.rows), "sequences": job.stats.sequences,
        "naive_tokens": job.stats.naive_tokens, "unique_tokens": unique, "preface_tokens": job.stats.preface_tokens,
        "fewest_tokens": job.stats.fewest_tokens, "lm_eval_hf_tokens": job.stats.hf_tokens,
        "packs": packs, "max_tokens_per_pack": job.max_tokens_per_pack, "spliced_pairs": job.pairs.spliced,
        "whole_string_pairs": job.pairs.whole, "setup_seconds": setup, "first_pack_seconds": first_pack or setup,
        "host_seconds": host, "naive_tokens_per_second": job.stats.naive_tokens / host,
        "floor_seconds": floor, "host_over_floor": host / floor if floor else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
