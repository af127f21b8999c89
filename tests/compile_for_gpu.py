"""Compile the Triton kernels ahead of time for NVIDIA targets, without a GPU (Triton ships ptxas).

Run in a fresh process with TRITON_INTERPRET unset (the interpreter replaces the kernels); prints
one JSON line per compiled variant. Usage: ``python tests/compile_for_gpu.py 90 80`` (compute
capabilities). Used by tests/test_kernels.py.
"""

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without the interpreter"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from invscale.kernels import fused_head, tree_attention  # noqa: E402

TYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def compile_variant(tuned_kernel, pointer_dtype, scalars, constexprs, config, capability):
    kernel = tuned_kernel.fn
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs or name in config.kwargs:
            signature[name] = "constexpr"
        elif name in scalars:
            signature[name] = scalars[name]
        else:
            signature[name] = f"*{pointer_dtype}"
    values = {**constexprs, **config.kwargs}
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(kernel.arg_names.index(k),): v for k, v in values.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": config.num_warps, "num_stages": config.num_stages})
    ptx = compiled.asm["ptx"]
    return {"shared_bytes": compiled.metadata.shared, "wgmma": "wgmma.mma_async" in ptx, "mma": "mma.sync" in ptx}


def main():
    for capability in map(int, sys.argv[1:]):
        compile_all(capability)


def compile_all(capability):
    head_ints = {n: "i32" for n in ("T", "V", "D", "T_BUCKET", "stride_ht", "stride_hd", "stride_wv", "stride_wd")}
    head_scalars = {**head_ints, "target_ptr": "*i64", "max_ptr": "*fp32", "sum_ptr": "*fp32", "picked_ptr": "*fp32",
                    "argmax_ptr": "*i32", "scale": "fp32", "softcap": "fp32"}
    attention_ints = {n: "i32" for n in ("N", "P", "N_BUCKET", "heads_per_kv", "blocks_width", "window", "sq_h",
                                          "sq_n", "sq_d", "sk_h", "sk_n", "sk_d", "sv_h", "sv_n", "sv_d", "so_h",
                                          "so_n", "so_d")}
    attention_scalars = {**attention_ints, "end_ptr": "*i64", "pos_ptr": "*i64", "blocks_ptr": "*i32",
                         "counts_ptr": "*i32", "slopes_ptr": "*fp32", "scale": "fp32", "softcap": "fp32"}
    # (dtype, head_dim, features): Gemma2's shape takes a sliding window and a soft cap at head_dim
    # 256; BLOOM's ALiBi at 64 (560m) and 128 (7b1)
    attention_variants = ([(dtype, head_dim, "") for dtype in ("bfloat16", "float16", "float32")
                           for head_dim in (64, 128)] + [("bfloat16", 256, "window_softcap")]
                          + [("bfloat16", head_dim, "alibi") for head_dim in (64, 128)])
    for dtype in ("bfloat16", "float16", "float32"):
        configs = fused_head._CONFIGS if dtype == "bfloat16" else fused_head._CONFIGS[:1]
        for config in configs:
            flags = {"HAS_BIAS": dtype == "float16", "HAS_SCALE": False, "HAS_SOFTCAP": False, "TRACK_ARGMAX": False,
                     "UPCAST": False, "IEEE": dtype == "float32"}
            report = compile_variant(fused_head._partials_kernel, TYPES[dtype], head_scalars, flags, config, capability)
            print(json.dumps({"kernel": "fused_head", "capability": capability, "dtype": dtype, **config.kwargs, **report}),
                  flush=True)
    for softcap, greedy in ((True, False), (False, True)):  # Gemma2's head; is_greedy for lm-eval
        flags = {"HAS_BIAS": False, "HAS_SCALE": softcap, "HAS_SOFTCAP": softcap, "TRACK_ARGMAX": greedy,
                 "UPCAST": False, "IEEE": False}
        report = compile_variant(fused_head._partials_kernel, "bf16", head_scalars, flags, fused_head._CONFIGS[0],
                                 capability)
        print(json.dumps({"kernel": "fused_head", "capability": capability, "dtype": "bfloat16", "softcap": softcap,
                          "argmax": greedy, **fused_head._CONFIGS[0].kwargs, **report}), flush=True)
    for dtype, head_dim, features in attention_variants:
        gemma2, alibi = features == "window_softcap", features == "alibi"
        flags = {"HEAD_DIM": head_dim, "BLOCK_D": head_dim, "BLOCK_M": tree_attention.BLOCK_M,
                 "BLOCK_N": tree_attention.BLOCK_N, "HAS_WINDOW": gemma2, "HAS_SOFTCAP": gemma2, "HAS_ALIBI": alibi,
                 "USES_POSITIONS": gemma2 or alibi, "UPCAST": False, "IEEE": dtype == "float32"}
        config = triton.Config({}, num_warps=4, num_stages=2)  # the leanest autotune config must fit
        report = compile_variant(tree_attention._tree_attention_kernel, TYPES[dtype], attention_scalars, flags, config,
                                 capability)
        print(json.dumps({"kernel": "tree_attention", "capability": capability, "dtype": dtype, "head_dim": head_dim,
                          "features": features, **report}), flush=True)


if __name__ == "__main__":
    main()
