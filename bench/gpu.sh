#!/usr/bin/env bash
# Every GPU measurement bench/RESULTS.md asks for, in stages that each finish within ~10 minutes
# on one H100-class GPU. Figures land as JSON in OUT (default bench-out/).
#
#   bash bench/gpu.sh tests|kernels|scorer|streaming [OUT]
set -euo pipefail
stage=${1:?name a stage: tests, kernels, scorer or streaming}
out=${2:-bench-out}
mkdir -p "$out"
case "$stage" in
  tests)      # the kernels, the scorer and streaming on the GPU against their references
    python -m pytest -q tests/test_kernels.py tests/test_cuda.py tests/test_streamed.py tests/test_conformance.py 2>&1 | tee "$out/tests.log" ;;
  kernels)    # fused head vs log_softmax(h @ W.T); tree attention vs flex_attention and dense SDPA
    python bench/kernel_timing.py --json "$out/kernels.json" ;;
  scorer)     # the whole scorer, both baselines, torch and Triton kernels, at 1.3B and 6.7B
    for shape in opt-1.3b opt-6.7b; do
      invscale bench --shape "$shape" --repeats 3 --json "$out/scorer-$shape.json"
      invscale bench --shape "$shape" --repeats 3 --prompt-len 40 --option-len 2 --preface-len 512 \
        --json "$out/scorer-$shape-preface.json"
    done ;;
  streaming)  # OPT-13B streamed under a third of its size vs resident, vs the PCIe and FLOP floors
    python bench/streaming.py --shape opt-13b --dir "${CHECKPOINT_DIR:-/tmp/opt-13b}" --json "$out/streaming-disk.json"
    python bench/streaming.py --shape opt-13b --dir "${CHECKPOINT_DIR:-/tmp/opt-13b}" --offload cpu --no-resident \
      --json "$out/streaming-cpu.json" ;;
  *) echo "unknown stage $stage: choose tests, kernels, scorer or streaming" >&2; exit 2 ;;
esac
