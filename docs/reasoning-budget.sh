#!/bin/bash
# Makes docs/reasoning-budget.png: SmolLM2-135M on 24 generated gambling and decoy rows, scored
# plainly (budget 0) and after chains of thought of at most 16, 48 and 128 tokens (CPU, a few
# minutes). Run from the repository root; the table printed is the README's.
set -euo pipefail
work=$(mktemp -d)
invscale evaluate --tasks gambling,decoy --n 24 --model smollm2-135m --device cpu --cot \
    --reasoning-tokens 0,16,48,128 --out "$work"
python - "$work/summary.csv" docs/reasoning-budget.png <<'PY'
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(9, 3.5))
for task in dict.fromkeys(row["task"] for row in rows):
    mine = [row for row in rows if row["task"] == task]
    budgets = [int(row["reasoning_tokens"]) for row in mine]
    accuracy.errorbar(budgets, [float(r["accuracy"]) for r in mine], marker="o", label=task,
                      yerr=[[float(r["accuracy"]) - float(r["accuracy_low"]) for r in mine],
                            [float(r["accuracy_high"]) - float(r["accuracy"]) for r in mine]], capsize=3)
    loss.plot(budgets, [float(r["mean_loss"]) for r in mine], marker="o", label=task)
for axes, name in ((accuracy, "accuracy (95% interval)"), (loss, "mean loss")):
    axes.set_xscale("symlog", linthresh=16)
    axes.set_xlabel("reasoning budget (tokens; 0 = plain prompt)")
    axes.set_ylabel(name)
    axes.legend()
figure.suptitle("SmolLM2-135M: accuracy and loss against the chain-of-thought budget")
figure.tight_layout()
figure.savefig(sys.argv[2], dpi=110)
PY
rm -rf "$work"
