#!/bin/bash
# Makes docs/through-training.png: two tiny random OPT models, each saved at "steps" 0, 1000, 2000
# and 3000 (fresh random weights each time, so nothing is learnt), swept on 100 generated gambling
# rows (CPU, about a minute). Run from the repository root.
set -euo pipefail
work=$(mktemp -d)
python - "$work" <<'PY'
import sys
from invscale.tiny import build_tiny_opt

for number, hidden in enumerate((16, 48)):
    for step in (0, 1000, 2000, 3000):
        build_tiny_opt(f"{sys.argv[1]}/opt-tiny-{hidden}/step-{step}", seed=10 * number + step // 1000,
                       hidden_size=hidden, num_hidden_layers=2, ffn_dim=4 * hidden, word_embed_proj_dim=hidden)
PY
models=$(ls -d "$work"/opt-tiny-*/step-* | paste -sd, -)
invscale sweep gambling --n 100 --models "$models" --device cpu --out "$work/run"
cp "$work/run/plots/gambling-training.png" docs/through-training.png
rm -rf "$work"
