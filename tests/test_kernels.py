"""The Triton kernels equal their torch references (fp64 ground truth) on fresh random inputs.

On CPU they run in Triton's interpreter (TRITON_INTERPRET=1, set in conftest), on small shapes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from invscale.kernels import fused_head
from invscale.kernels.fused_head import LogitTransform, answer_logprobs_torch, answer_logprobs_triton
from invscale.kernels.launch import KernelUnavailable, resolve_kernels
from invscale.kernels.tree_attention import tree_attention_torch, tree_attention_triton, tree_mask, visible_blocks
from invscale.scoring.trie import build_pack
from random_data import random_sequences

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def relative_error(got, expected):
    got, expected = got.double(), expected.double()
    assert torch.isfinite(got).all(), "every output element was written and is finite"
    return float((got - expected).norm() / expected.norm())


def fp64_answer_logprobs(hidden, weight, targets, bias, scale=1.0, softcap=None):
    logits = (hidden.double() @ weight.double().T + (0 if bias is None else bias.double())) * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    lse = torch.logsumexp(logits, dim=1)
    return logits.gather(1, targets[:, None]).squeeze(1) - lse, lse


@pytest.mark.parametrize("rows,dim,vocab,dtype,bias", [
    (1, 24, 100, torch.float32, True),      # T = 1
    (37, 48, 1031, torch.float32, False),   # vocab not a multiple of any block
    (70, 80, 517, torch.float32, True),     # d not a multiple of the d block
    (19, 32, 300, torch.bfloat16, True),
    (33, 64, 250, torch.float16, False),
])
def test_fused_head_matches_references(rows, dim, vocab, dtype, bias):
    g = torch.Generator().manual_seed(rows * 1000 + vocab)
    hidden = (torch.randn(rows, dim, generator=g) * 2).to(dtype).to(DEVICE)
    weight = torch.randn(vocab, dim, generator=g).to(dtype).to(DEVICE)
    bias_vec = torch.randn(vocab, generator=g).to(dtype).to(DEVICE) if bias else None
    targets = torch.randint(0, vocab, (rows,), generator=g).to(DEVICE)
    got, lse = answer_logprobs_triton(hidden, weight, targets, bias_vec, return_lse=True)
    exact, exact_lse = fp64_answer_logprobs(hidden, weight, targets, bias_vec)
    assert got.dtype == torch.float32 and got.shape == (rows,)
    # the kernel accumulates exactly representable inputs in fp32: far under 1e-4 in every dtype
    assert relative_error(got, exact) < 1e-5 and relative_error(lse, exact_lse) < 1e-5
    assert float((got.double() - exact).abs().max()) <= 1e-4
    if dtype == torch.float32:  # the torch reference rounds logits to the model dtype; in fp32 they agree
        reference = answer_logprobs_torch(hidden, weight, targets, bias_vec, rows_per_chunk=16)
        assert float((got - reference).abs().max()) <= 1e-4


@pytest.mark.parametrize("scale,softcap,dtype", [(0.0625, None, torch.float32), (1.0, 3.0, torch.float32),
                                                 (2.5, 30.0, torch.bfloat16)])
def test_fused_head_applies_the_logit_transform(scale, softcap, dtype):
    """Cohere-style scale and Gemma2-style final soft cap, applied before the logsumexp."""
    g = torch.Generator().manual_seed(int(scale * 100))
    hidden = (torch.randn(23, 40, generator=g) * 3).to(dtype).to(DEVICE)
    weight = torch.randn(301, 40, generator=g).to(dtype).to(DEVICE)
    targets = torch.randint(0, 301, (23,), generator=g).to(DEVICE)
    transform = LogitTransform(scale, softcap)
    got = answer_logprobs_triton(hidden, weight, targets, transform=transform)
    exact, _ = fp64_answer_logprobs(hidden, weight, targets, None, scale, softcap)
    assert float((got.double() - exact).abs().max()) <= 1e-4
    reference = answer_logprobs_torch(hidden, weight, targets, transform=transform)
    assert float((reference.double() - exact).abs().max()) <= (1e-4 if dtype == torch.float32 else 0.5)
    plain = answer_logprobs_torch(hidden, weight, targets)
    assert float((plain.double() - exact).abs().max()) > 1e-2, "the transform changes these log-probs"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_head_reports_whether_each_target_is_the_argmax(dtype):
    """is_greedy without logits: the kernel tracks the first column holding each row's max."""
    g = torch.Generator().manual_seed(5)
    hidden = (torch.randn(40, 24, generator=g) * 2).to(dtype).to(DEVICE)
    weight = torch.randn(530, 24, generator=g).to(dtype).to(DEVICE)
    weight[7] = weight[3]  # a tie between columns 3 and 7: the first wins, as torch.argmax
    hidden[0] = weight[3].float().sign().to(dtype) * 3
    logits = hidden.double() @ weight.double().T
    argmax = logits.argmax(dim=1)
    targets = torch.where(torch.arange(40, device=DEVICE) % 2 == 0, argmax,
                          torch.randint(0, 530, (40,), generator=g).to(DEVICE))
    targets[1] = 7 if argmax[1] != 7 else 8
    # the torch reference rounds logits to the model dtype (bf16 may tie them); the kernel does not
    functions = (answer_logprobs_triton, answer_logprobs_torch) if dtype == torch.float32 else (answer_logprobs_triton,)
    for function in functions:
        logprobs, greedy = function(hidden, weight, targets, with_greedy=True)
        assert greedy.tolist() == (argmax == targets).tolist()
        assert float((logprobs.double() - fp64_answer_logprobs(hidden, weight, targets, None)[0]).abs().max()) <= 1e-4
        assert greedy[::2].all() and not greedy.all()


def test_fused_head_no_rows():
    weight = torch.randn(50, 16, device=DEVICE)
    out = answer_logprobs_triton(torch.empty(0, 16, device=DEVICE), weight, torch.empty(0, dtype=torch.long, device=DEVICE))
    assert out.shape == (0,)


def random_tree(seed, n_sequences):
    """subtree_end of a real ragged trie built by the scorer's packer."""
    pack = build_pack(random_sequences(seed, n=n_sequences, vocab=4))
    return torch.from_numpy(pack.subtree_end).to(DEVICE)


@pytest.mark.parametrize("blocks", [(16, 16), (64, 64), (32, 16)])
@pytest.mark.parametrize("seed,n_sequences,prefix,heads,kv_heads,head_dim,dtype", [
    (0, 1, 0, 2, 2, 8, torch.float32),      # one short chain (N may be < one block)
    (1, 12, 0, 4, 4, 16, torch.float32),
    (2, 20, 5, 4, 2, 64, torch.float32),    # grouped-query heads, prefix smaller than a block
    (3, 25, 40, 2, 1, 32, torch.float32),   # prefix longer than a block, not a multiple of it
    (4, 18, 9, 2, 2, 64, torch.bfloat16),
    (5, 15, 0, 3, 3, 24, torch.float16),    # head_dim padded up to a power of two
])
def test_tree_attention_matches_references(seed, n_sequences, prefix, heads, kv_heads, head_dim, dtype, blocks):
    subtree_end = random_tree(seed, n_sequences)
    n = subtree_end.shape[0]
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(1, n, heads, head_dim, generator=g).to(dtype).to(DEVICE).transpose(1, 2)  # HF's layout
    key = torch.randn(1, kv_heads, prefix + n, head_dim, generator=g).to(dtype).to(DEVICE)
    value = torch.randn(1, kv_heads, prefix + n, head_dim, generator=g).to(dtype).to(DEVICE)
    scale = 0.7 / head_dim ** 0.5
    got = tree_attention_triton(query, key, value, subtree_end, scale, lists=visible_blocks(subtree_end, *blocks))
    exact = tree_attention_torch(query.double(), key.double(), value.double(), subtree_end, scale)
    assert got.dtype == dtype and got.shape == query.shape
    if dtype == torch.float32:
        assert relative_error(got, exact) < 1e-5
        same_dtype = tree_attention_torch(query, key, value, subtree_end, scale)
        assert float((got - same_dtype).abs().max()) <= 1e-4
    else:  # inputs exact, output rounded to 8 or 11 mantissa bits
        assert relative_error(got, exact) < 1e-2


def random_positions(seed, n_sequences, prefix):
    """(subtree_end, positions) of a real ragged trie: positions are the preface length plus depth."""
    pack = build_pack(random_sequences(seed, n=n_sequences, vocab=4))
    return (torch.from_numpy(pack.subtree_end).to(DEVICE), torch.from_numpy(pack.depth + prefix).to(DEVICE))


def test_window_mask_is_the_ancestor_rule_within_the_window():
    """Brute force: q sees k iff k is an ancestor (or q) and position[q] - position[k] < window."""
    prefix, window = 6, 5
    subtree_end, positions = random_positions(7, 25, prefix)
    n = subtree_end.shape[0]
    mask = tree_mask(subtree_end, prefix, positions, window).cpu()
    ends, pos = subtree_end.tolist(), positions.tolist()
    for q in range(n):
        for k in range(prefix + n):
            key_position = k if k < prefix else pos[k - prefix]
            ancestor = k < prefix or (k - prefix <= q < ends[k - prefix])
            assert bool(mask[q, k]) == (ancestor and pos[q] - key_position < window), (q, k)
    assert not mask.all(dim=1).any() and mask[:, :prefix].any(), "the window hides some prefix keys, not all"


@pytest.mark.parametrize("seed,prefix,heads,kv_heads,head_dim,dtype,window,softcap", [
    (0, 0, 2, 2, 16, torch.float32, 3, None),       # window only
    (1, 70, 4, 2, 32, torch.float32, 9, 5.0),      # window shorter than the prefix: prefix blocks skipped
    (2, 12, 2, 1, 64, torch.float32, None, 2.0),    # soft cap only
    (3, 20, 4, 4, 32, torch.bfloat16, 6, 20.0),
])
def test_tree_attention_window_and_softcap_match_references(seed, prefix, heads, kv_heads, head_dim, dtype, window,
                                                            softcap):
    from invscale.scoring.attention import tree_block_mask
    from torch.nn.attention.flex_attention import flex_attention

    subtree_end, positions = random_positions(seed, 22, prefix)
    n = subtree_end.shape[0]
    g = torch.Generator().manual_seed(seed)
    query = (torch.randn(1, n, heads, head_dim, generator=g) * 2).to(dtype).to(DEVICE).transpose(1, 2)
    key = (torch.randn(1, kv_heads, prefix + n, head_dim, generator=g) * 2).to(dtype).to(DEVICE)
    value = torch.randn(1, kv_heads, prefix + n, head_dim, generator=g).to(dtype).to(DEVICE)
    scale = 1 / head_dim ** 0.5
    options = dict(positions=positions, window=window, softcap=softcap)
    exact = tree_attention_torch(query.double(), key.double(), value.double(), subtree_end, scale, **options)
    plain = tree_attention_torch(query.double(), key.double(), value.double(), subtree_end, scale)
    assert relative_error(plain, exact) > 1e-2, "window and soft cap change the output"
    got = tree_attention_triton(query, key, value, subtree_end, scale, lists=visible_blocks(subtree_end, 16, 16),
                                **options)
    flex = flex_attention(query.double(), key.double(), value.double(), block_mask=tree_block_mask(
        subtree_end, prefix, positions, window), scale=scale, enable_gqa=heads != kv_heads,
        score_mod=None if softcap is None else lambda s, *_: torch.tanh(s / softcap) * softcap)
    assert relative_error(flex, exact) < 1e-6
    if dtype == torch.float32:
        assert relative_error(got, exact) < 1e-5
        same_dtype = tree_attention_torch(query, key, value, subtree_end, scale, **options)
        assert float((got - same_dtype).abs().max()) <= 1e-4
    else:
        assert relative_error(got, exact) < 2e-2


@pytest.mark.parametrize("seed,prefix,heads,kv_heads,window", [
    (0, 0, 4, 4, None),     # no prefix
    (1, 70, 4, 2, None),    # a prefix longer than a block, grouped-query heads
    (2, 20, 3, 3, 6),       # with a window
])
def test_alibi_in_every_backend_matches_a_brute_force_reference(seed, prefix, heads, kv_heads, window):
    """Each score biased by its head's slope times (key position - query position), the prefix's
    keys at positions 0..P-1: written out here in fp64, against every backend in fp32."""
    from invscale.scoring import attention

    subtree_end, positions = random_positions(seed, 22, prefix)
    n = subtree_end.shape[0]
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(1, n, heads, 16, generator=g).to(DEVICE).transpose(1, 2)
    key = torch.randn(1, kv_heads, prefix + n, 16, generator=g).to(DEVICE)
    value = torch.randn(1, kv_heads, prefix + n, 16, generator=g).to(DEVICE)
    slopes = torch.tensor([0.5 ** (h + 1) for h in range(heads)], device=DEVICE)
    scale = 0.25
    visible = tree_mask(subtree_end, prefix, positions, window)  # checked against brute force above
    key_positions = torch.cat([torch.arange(prefix, device=DEVICE), positions]).double()
    grouped_key = key.double().repeat_interleave(heads // kv_heads, dim=1)[0]
    grouped_value = value.double().repeat_interleave(heads // kv_heads, dim=1)[0]
    scores = query.double()[0] @ grouped_key.transpose(-1, -2) * scale  # [H, N, P + N]
    bias = slopes.double()[:, None, None] * (key_positions[None, None, :] - positions.double()[None, :, None])
    plain = (torch.softmax(scores.masked_fill(~visible, float("-inf")), -1) @ grouped_value)[None]
    exact = (torch.softmax((scores + bias).masked_fill(~visible, float("-inf")), -1) @ grouped_value)[None]
    assert relative_error(plain, exact) > 1e-2, "the biases change the output"
    for backend in ("sdpa", "segments", "flex", "triton"):
        context = attention.TreeContext(subtree_end=subtree_end, positions=positions)
        got = attention._BACKENDS[backend](query, key, value, context, scale, window, None, slopes=slopes)
        assert relative_error(got, exact) < 1e-5, backend


@pytest.mark.parametrize("seed", range(4))
def test_visible_blocks_lists_exactly_the_blocks_with_a_visible_pair(seed):
    subtree_end = random_tree(seed, 40)
    n = subtree_end.shape[0]
    for block_m, block_n in [(16, 16), (8, 32), (32, 8)]:
        lists = visible_blocks(subtree_end, block_m, block_n)
        mask = tree_mask(subtree_end).cpu()
        for q_block in range((n + block_m - 1) // block_m):
            rows = mask[q_block * block_m:(q_block + 1) * block_m]
            expected = [c for c in range((n + block_n - 1) // block_n) if rows[:, c * block_n:(c + 1) * block_n].any()]
            count = int(lists.counts[q_block])
            assert lists.blocks[q_block, :count].tolist() == expected
    assert (lists.counts < (n + block_n - 1) // block_n).any(), "a ragged trie has skippable blocks"


def test_kernel_choice():
    assert resolve_kernels("auto", torch.device("cpu")) == "torch"
    assert resolve_kernels("triton", torch.device(DEVICE)) == "triton"
    with pytest.raises(ValueError, match="--kernels"):
        resolve_kernels("cuda-magic", torch.device("cpu"))


def test_triton_on_cpu_without_interpreter_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(KernelUnavailable, match="needs a CUDA device"):
        resolve_kernels("triton", torch.device("cpu"))


SHARED_MEMORY_LIMIT = {90: 232448, 80: 166912}  # bytes per block on H100 / A100


def test_kernels_compile_for_hopper_and_ampere():
    """Without a GPU: every kernel variant the scorer launches compiles for sm_90 and sm_80, 16-bit
    variants use the tensor cores (wgmma on Hopper, mma on Ampere) and every autotune config of the
    fused head fits Hopper's shared memory. Runs in a fresh process without the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("compile_for_gpu.py")
    done = subprocess.run([sys.executable, str(script), "90", "80"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    variants = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(variants) == 2 * (len(fused_head._CONFIGS) + 2 + 2 + 2 * 3 + 1 + 2)
    for variant in variants:
        if variant["dtype"] != "float32":
            assert variant["wgmma" if variant["capability"] == 90 else "mma"], variant
        if variant["kernel"] == "tree_attention" or variant["capability"] == 90:
            assert variant["shared_bytes"] <= SHARED_MEMORY_LIMIT[variant["capability"]], variant


@pytest.mark.parametrize("segment", [1, 5, 16, 64])
@pytest.mark.parametrize("seed,n_sequences,prefix,heads,kv_heads,head_dim,value_dim,window,softcap", [
    (0, 1, 0, 2, 2, 8, 8, None, None),        # one chain, no prefix
    (1, 30, 0, 4, 2, 16, 16, None, None),     # grouped-query heads
    (2, 25, 13, 3, 3, 32, 32, 4, None),       # window shorter than the prefix
    (3, 40, 7, 4, 1, 16, 12, 9, 3.0),         # narrower values (latent attention), window and soft cap
    (4, 12, 30, 2, 2, 8, 8, None, 2.5),
    (5, 20, 45, 6, 2, 16, 16, None, None),    # a prefix every query sees: kept apart on the CPU
])
def test_segment_attention_matches_the_dense_reference(seed, n_sequences, prefix, heads, kv_heads, head_dim,
                                                       value_dim, window, softcap, segment):
    from invscale.kernels.segment_attention import prefix_apart, segment_attention, segment_plan

    subtree_end, positions = random_positions(seed, n_sequences, prefix)
    n = subtree_end.shape[0]
    g = torch.Generator().manual_seed(seed)
    query = (torch.randn(1, n, heads, head_dim, generator=g) * 2).double().to(DEVICE).transpose(1, 2)
    key = (torch.randn(1, kv_heads, prefix + n, head_dim, generator=g) * 2).double().to(DEVICE)
    value = torch.randn(1, kv_heads, prefix + n, value_dim, generator=g).double().to(DEVICE)
    expected = tree_attention_torch(query, key, value, subtree_end, 0.3, positions=positions, window=window,
                                    softcap=softcap)
    plan = segment_plan(subtree_end, positions, prefix, window, segment, dtype=torch.float64)
    got = segment_attention(query, key, value, plan, 0.3, softcap)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) < 1e-10
    if segment == 5 and n > 40:
        assert max(batch.keys.shape[1] for batch in plan.batches) < prefix + n, "segments see fewer keys than all"
        assert len(plan.batches) > 1, "segments with short paths are batched apart from long ones"
    apart = prefix_apart(query, key, value, window, softcap)
    assert apart == (DEVICE == "cpu" and window is None and softcap is None and value_dim == head_dim)
    if apart:
        plan = segment_plan(subtree_end, positions, prefix, window, segment, dtype=torch.float64,
                            groups=heads // kv_heads)
        assert all(batch.keys.min() >= prefix for batch in plan.batches), "the segments' keys leave the prefix out"
        got = segment_attention(query, key, value, plan, 0.3, softcap)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) < 1e-10
