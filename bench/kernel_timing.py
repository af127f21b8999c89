"""Check and time the Triton kernels on a GPU against the plain torch ways.

    python bench/kernel_timing.py [--json out.json]

1. Fused answer-token log-probs vs ``log_softmax((h @ W.T).float()).gather`` at T ∈ {1k, 8k},
   d ∈ {768, 2048, 4096}, V = 50272, bf16: relative error of both against fp64, median time
   (``triton.testing.do_bench``) and peak memory above the inputs.
2. Tree attention on a scorer-shaped trie (items of a 256-token prompt and 4 × 6-token options,
   32 heads × 64 dims, bf16) at N ∈ {4k, 16k, 64k}, with and without a 512-token prefix: the
   kernel vs compiled flex_attention with the same BlockMask vs dense SDPA with a boolean mask.
"""

from __future__ import annotations

import argparse
import json

import torch
from triton.testing import do_bench

from invscale.kernels.fused_head import answer_logprobs_triton
from invscale.kernels.tree_attention import tree_attention_torch, tree_attention_triton, tree_mask, visible_blocks
from invscale.scoring.attention import tree_block_mask
from invscale.scoring.trie import SequenceRef, build_pack

VOCAB = 50272


def relative_error(got, exact):
    return float((got.double() - exact).norm() / exact.norm())


def measure(function):
    """(median ms, peak MiB allocated above what was allocated before)."""
    function()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    function()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return do_bench(function, warmup=50, rep=300, return_mode="median"), peak


def bench_head(rows, dim, dtype=torch.bfloat16):
    g = torch.Generator(device="cuda").manual_seed(rows + dim)
    hidden = torch.randn(rows, dim, device="cuda", generator=g).to(dtype)
    weight = (torch.randn(VOCAB, dim, device="cuda", generator=g) / dim ** 0.5 * 4).to(dtype)
    targets = torch.randint(0, VOCAB, (rows,), device="cuda", generator=g)

    def plain():
        return torch.log_softmax((hidden @ weight.T).float(), dim=-1).gather(1, targets[:, None]).squeeze(1)

    def fused():
        return answer_logprobs_triton(hidden, weight, targets)

    exact = torch.log_softmax(hidden.double() @ weight.double().T, dim=-1).gather(1, targets[:, None]).squeeze(1)
    row = {"T": rows, "d": dim, "err_fused": relative_error(fused(), exact), "err_plain": relative_error(plain(), exact)}
    del exact
    row["ms_plain"], row["mib_plain"] = measure(plain)
    row["ms_fused"], row["mib_fused"] = measure(fused)
    row["speedup"] = row["ms_plain"] / row["ms_fused"]
    row["memory_ratio"] = row["mib_plain"] / max(row["mib_fused"], 1e-9)
    row["fused_tflops"] = 2 * rows * dim * VOCAB / row["ms_fused"] / 1e9
    return row


def scorer_trie(n_tokens, prompt_len=256, options=4, option_len=6, seed=0):
    """subtree_end of a pack shaped like the scorer's: items of a prompt with several options."""
    import random

    rng = random.Random(seed)
    sequences, n = [], 0
    while n < n_tokens:
        prompt = tuple(rng.randrange(VOCAB) for _ in range(prompt_len))
        for _ in range(options):
            sequences.append(SequenceRef(len(sequences), prompt + tuple(rng.randrange(VOCAB) for _ in range(option_len)), 1))
        n += prompt_len + options * option_len
    pack = build_pack(sequences)
    return torch.from_numpy(pack.subtree_end[:n_tokens]).clamp(max=n_tokens).cuda()


def bench_attention(n, prefix, heads=32, head_dim=64, dtype=torch.bfloat16):
    from torch.nn.attention.flex_attention import flex_attention

    subtree_end = scorer_trie(n)
    g = torch.Generator(device="cuda").manual_seed(n + prefix)
    query = torch.randn(1, heads, n, head_dim, device="cuda", generator=g, dtype=dtype)
    key = torch.randn(1, heads, prefix + n, head_dim, device="cuda", generator=g, dtype=dtype)
    value = torch.randn(1, heads, prefix + n, head_dim, device="cuda", generator=g, dtype=dtype)
    lists = visible_blocks(subtree_end)
    block_mask = tree_block_mask(subtree_end, prefix)
    flex = torch.compile(flex_attention)
    row = {"N": n, "prefix": prefix, "visible_pairs": int(tree_mask(subtree_end).sum()) + n * prefix,
           "listed_blocks": int(lists.counts.sum()), "all_blocks": lists.blocks.shape[0] * ((n + 63) // 64)}
    ours = tree_attention_triton(query, key, value, subtree_end, lists=lists)
    if n <= 4096:
        exact = tree_attention_torch(query.double(), key.double(), value.double(), subtree_end)
        row["err_triton"] = relative_error(ours, exact)
        row["err_flex"] = relative_error(flex(query, key, value, block_mask=block_mask), exact)
        del exact
    row["ms_triton"], _ = measure(lambda: tree_attention_triton(query, key, value, subtree_end, lists=lists))
    row["ms_triton_with_lists"], _ = measure(lambda: tree_attention_triton(query, key, value, subtree_end))
    row["ms_flex"], _ = measure(lambda: flex(query, key, value, block_mask=block_mask))
    try:
        row["ms_sdpa_dense"] = time_dense(query, key, value, subtree_end, prefix)
    except torch.OutOfMemoryError:
        row["ms_sdpa_dense"] = None
    torch.cuda.empty_cache()
    return row


def time_dense(query, key, value, subtree_end, prefix):
    """Median ms of SDPA with the dense boolean tree mask (built once, outside the timing)."""
    mask = tree_mask(subtree_end, prefix)
    return measure(lambda: tree_attention_torch(query, key, value, subtree_end, mask=mask))[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    figures = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "head": [], "attention": []}
    for rows in (1024, 8192):
        for dim in (768, 2048, 4096):
            figures["head"].append(bench_head(rows, dim))
            print(json.dumps(figures["head"][-1]), flush=True)
    for n in (4096, 16384, 65536):
        for prefix in (0, 512):
            figures["attention"].append(bench_attention(n, prefix))
            print(json.dumps(figures["attention"][-1]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    print("\nfused head (bf16, V=50272)")
    print(f"{'T':>6} {'d':>5} {'plain ms':>9} {'fused ms':>9} {'speedup':>8} {'MiB plain':>10} {'MiB fused':>10} {'TFLOP/s':>8} {'err':>9}")
    for r in figures["head"]:
        print(f"{r['T']:>6} {r['d']:>5} {r['ms_plain']:>9.3f} {r['ms_fused']:>9.3f} {r['speedup']:>8.2f} "
              f"{r['mib_plain']:>10.1f} {r['mib_fused']:>10.2f} {r['fused_tflops']:>8.0f} {r['err_fused']:>9.2e}")
    print("\ntree attention (bf16, 32 heads x 64)")
    print(f"{'N':>6} {'P':>4} {'triton ms':>10} {'+lists ms':>10} {'flex ms':>8} {'dense ms':>9} {'blocks':>12}")
    for r in figures["attention"]:
        dense = f"{r['ms_sdpa_dense']:.3f}" if r["ms_sdpa_dense"] is not None else "OOM"
        print(f"{r['N']:>6} {r['prefix']:>4} {r['ms_triton']:>10.3f} {r['ms_triton_with_lists']:>10.3f} "
              f"{r['ms_flex']:>8.3f} {dense:>9} {r['listed_blocks']:>6}/{r['all_blocks']}")


if __name__ == "__main__":
    main()
