"""How far one run's class log-probs are from another's: a dtype's error against float32, say.

    invscale evaluate --n 100 --dtype float32 -o A; invscale evaluate --n 100 --dtype bfloat16 -o B
    python bench/dtype_error.py A B [--json F]

Reads every ``NAME.results.jsonl`` present in both folders (``invscale evaluate``'s outputs) and
prints, per task and over all tasks, the distribution of |Δ class log-prob| (B − A: median, 90th
and 99th percentiles, maximum, in nats), the accuracy of each run, and on how many rows ``correct``
agrees. Rows are matched by index; a task whose rows or classes differ between the runs is an
error, not skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SUFFIX = ".results.jsonl"


def read(path: Path) -> dict[int, dict]:
    """A results file's rows by index."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return {row["index"]: row for row in rows}


def summary(deltas: list[float], a: list[dict], b: list[dict]) -> dict:
    """The |Δ| distribution, both accuracies and ``correct``'s agreement over matched rows."""
    values = np.abs(np.array(deltas))
    return {"class_logprobs": len(values), "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max()), "rows": len(a),
            "accuracy_a": sum(r["correct"] for r in a) / len(a), "accuracy_b": sum(r["correct"] for r in b) / len(b),
            "correct_agrees": sum(x["correct"] == y["correct"] for x, y in zip(a, b))}


def compare(first: Path, second: Path) -> dict[str, dict]:
    """{task: summary}, with ``all`` over every task, for the tasks both folders hold."""
    names = sorted(p.name[:-len(SUFFIX)] for p in first.glob(f"*{SUFFIX}") if (second / p.name).exists())
    if not names:
        raise SystemExit(f"no *{SUFFIX} file is in both {first} and {second}")
    out, every = {}, ([], [], [])
    for name in names:
        a, b = read(first / f"{name}{SUFFIX}"), read(second / f"{name}{SUFFIX}")
        if a.keys() != b.keys():
            raise SystemExit(f"{name}: the two runs hold different rows ({len(a)} and {len(b)})")
        pairs = [(a[i], b[i]) for i in sorted(a)]
        deltas = []
        for x, y in pairs:
            if len(x["class_logprobs"]) != len(y["class_logprobs"]):
                raise SystemExit(f"{name}: row {x['index']} has {len(x['class_logprobs'])} classes in one run "
                                 f"and {len(y['class_logprobs'])} in the other")
            deltas += [v - u for u, v in zip(x["class_logprobs"], y["class_logprobs"])]
        rows_a, rows_b = [x for x, _ in pairs], [y for _, y in pairs]
        out[name] = summary(deltas, rows_a, rows_b)
        for whole, part in zip(every, (deltas, rows_a, rows_b)):
            whole += part
    out["all"] = summary(*every)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="the reference run's folder (float32, say)")
    parser.add_argument("second", type=Path, help="the run to compare with it")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = compare(args.first, args.second)
    print(f"{'task':<14}{'n':>6}{'median':>9}{'p90':>9}{'p99':>9}{'max':>9}{'acc A':>8}{'acc B':>8}  correct agrees")
    for name, s in result.items():
        print(f"{name:<14}{s['class_logprobs']:>6}{s['median']:>9.4f}{s['p90']:>9.4f}{s['p99']:>9.4f}{s['max']:>9.4f}"
              f"{s['accuracy_a']:>8.3f}{s['accuracy_b']:>8.3f}  {s['correct_agrees']}/{s['rows']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
