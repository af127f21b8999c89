"""Time layer-streamed scoring of a model bigger than its budget, against resident scoring and
against max(PCIe floor, FLOP floor).

    python bench/streaming.py --shape opt-13b --dir /tmp/opt-13b [--gpu-memory 8GiB] [--json out.json]

Writes a random-init OPT of ``--shape`` to ``--dir`` as safetensors (one shard per layer; kept
and reused when the directory already holds a checkpoint), then scores the bench workload with
``--offload`` under ``--gpu-memory`` (default: a third of the model's bytes) and, unless
``--no-resident``, with the whole model on the device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from invscale.benchmark.streaming import run_streaming_benchmark, write_random_checkpoint
from invscale.benchmark.workload import OPT_SHAPES, OPT_VOCAB, WordIdTokenizer, synthetic_dataset
from invscale.models import parse_memory, resolve_device, resolve_dtype
from invscale.scoring.streamed import StreamBudgetError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="opt-13b", choices=list(OPT_SHAPES))
    parser.add_argument("--dir", type=Path, required=True, help="where the random checkpoint is written")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--offload", default="disk", choices=["disk", "cpu"])
    parser.add_argument("--gpu-memory", help="streaming budget (default: a third of the model's bytes)")
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--options", type=int, default=4)
    parser.add_argument("--option-len", type=int, default=6)
    parser.add_argument("--preface-len", type=int, default=0)
    parser.add_argument("--max-tokens-per-pack", type=int)
    parser.add_argument("--no-resident", action="store_true", help="skip the resident run (model too big)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    if not (args.dir / "config.json").exists():
        write_random_checkpoint(args.shape, args.dir, dtype, device=device)
    budget = parse_memory(args.gpu_memory) if args.gpu_memory else None
    dataset = synthetic_dataset(args.items, args.prompt_len, args.options, args.option_len, args.preface_len,
                                vocab=OPT_VOCAB)
    try:
        figures = run_streaming_benchmark(args.dir, WordIdTokenizer(), dataset, dtype, device, budget, args.offload,
                                          args.max_tokens_per_pack, resident=not args.no_resident)
    except StreamBudgetError as exc:
        raise SystemExit(f"error: {exc}") from None
    figures["shape"] = args.shape
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
