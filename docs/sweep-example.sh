#!/bin/bash
# Makes docs/sweep-example.png: a sweep of three tiny random OPT checkpoints on 100 generated
# gambling rows (CPU, under a minute). Run from the repository root.
set -euo pipefail
work=$(mktemp -d)
python - "$work" <<'PY'
import sys
from invscale.tiny import build_tiny_opt

for i, (hidden, layers) in enumerate(((16, 1), (32, 2), (64, 3))):
    build_tiny_opt(f"{sys.argv[1]}/opt-tiny-{hidden}", seed=i, hidden_size=hidden, num_hidden_layers=layers,
                   ffn_dim=4 * hidden, word_embed_proj_dim=hidden)
PY
invscale generate gambling --n 100 --seed 0 --out "$work/gambling.jsonl"
invscale sweep "$work/gambling.jsonl" --models "$work/opt-tiny-16,$work/opt-tiny-32,$work/opt-tiny-64" \
    --device cpu --out "$work/run"
cp "$work/run/plots/gambling.png" docs/sweep-example.png
rm -rf "$work"
