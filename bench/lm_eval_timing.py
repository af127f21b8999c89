"""Time lm-eval runs of ``--model hf`` and ``--model invscale`` side by side, interleaved, and check
that they agree.

    python bench/lm_eval_timing.py --model M --tasks T --include-path DIR --shots 5 \\
        --hf-batch-sizes 16,32 --rounds 3 [--invscale-paths trie,cache] [--phase generate_until] \\
        [--dtype bfloat16] --out OUT

Each round runs ``lm_eval --model hf`` at every batch size given and ``invscale lm-eval --model
invscale`` at its defaults (once per path of ``--invscale-paths``), one after the other, each a
fresh process. For every run it records,
from the moment the command starts: the first line of output (start-up), the start and the end
of the timed phase (lm-eval's progress bar ``Running loglikelihood requests``, or with ``--phase
generate_until`` ``Running generate_until requests``, appearing and reaching 100%) and the exit.
It prints the medians per run kind, the phase ratio of the fastest HF batch size to invscale, and
how far the two backends' per-sample results are apart: for log-likelihoods the largest absolute
difference and whether ``is_greedy`` and acc are the same on every sample; for generations how
many texts differ and whether the metrics agree.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHASES = {"loglikelihood": re.compile(rb"Running loglikelihood requests:\s+(\d+)%"),
          "generate_until": re.compile(rb"Running generate_until requests:\s+(\d+)%")}


def timed_run(command: list[str], log: Path, phase: str = "loglikelihood") -> dict:
    """Run ``command``, its output to ``log``; seconds from its start to the first output, to the
    loglikelihood phase's start and end, and to its exit."""
    began = time.perf_counter()
    marks: dict[str, float] = {}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while chunk := process.stdout.read1(65536):
            now = time.perf_counter() - began
            out.write(chunk)
            marks.setdefault("first_output", now)
            for match in PHASES[phase].finditer(chunk):
                marks.setdefault("phase_start", now)
                if match.group(1) == b"100":
                    marks.setdefault("phase_end", now)
        code = process.wait()
    marks["exit"] = time.perf_counter() - began
    if code != 0 or "phase_end" not in marks:
        raise SystemExit(f"{' '.join(command)}: exit {code}, see {log}")
    marks["phase"] = marks["phase_end"] - marks["phase_start"]
    return marks


def samples(folder: Path) -> dict[tuple[str, int], dict]:
    """lm-eval's logged samples under ``folder``, by (task, doc id)."""
    found = {}
    for path in glob.glob(str(folder / "**" / "samples_*.jsonl"), recursive=True):
        task = re.sub(r"^samples_(.*)_[^_]*$", r"\1", Path(path).stem)
        for line in open(path):
            sample = json.loads(line)
            found[task, sample["doc_id"]] = sample
    return found


def generation_agreement(a: Path, b: Path) -> dict:
    """How many of two runs' generated texts differ, and whether every sample's metric agrees."""
    left, right = samples(a), samples(b)
    if left.keys() != right.keys() or not left:
        raise SystemExit(f"{a} and {b} hold different samples")
    differing = [key for key, sample in left.items() if sample["resps"] != right[key]["resps"]]
    metrics_same = all(sample.get("exact_match") == right[key].get("exact_match") for key, sample in left.items())
    return {"samples": len(left), "texts_differing": len(differing), "differing_docs": [k[1] for k in differing][:20],
            "exact_match_identical": metrics_same}


def agreement(a: Path, b: Path) -> dict:
    """The per-request log-likelihood differences between two runs' samples (largest, median and
    99th percentile), and on how many samples ``is_greedy`` and acc differ."""
    left, right = samples(a), samples(b)
    if left.keys() != right.keys() or not left:
        raise SystemExit(f"{a} and {b} hold different samples")
    differences, greedy_differing, acc_differing = [], 0, 0
    for key, sample in left.items():
        other = right[key]
        greedy_same = True
        for (ll, greedy), (ll_other, greedy_other) in zip(
                (response[0] for response in sample["resps"]), (response[0] for response in other["resps"])):
            differences.append(abs(float(ll) - float(ll_other)))
            greedy_same &= str(greedy) == str(greedy_other)  # logged as the strings 'True' / 'False'
        greedy_differing += not greedy_same
        acc_differing += sample.get("acc") != other.get("acc")
    differences.sort()
    return {"samples": len(left), "max_abs_loglikelihood_difference": differences[-1],
            "median_abs_loglikelihood_difference": statistics.median(differences),
            "p99_abs_loglikelihood_difference": differences[int(0.99 * (len(differences) - 1))],
            "is_greedy_identical": greedy_differing == 0, "acc_identical": acc_differing == 0,
            "samples_is_greedy_differing": greedy_differing, "samples_acc_differing": acc_differing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--include-path", required=True)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--hf-batch-sizes", default="16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--invscale-paths", default="auto",
                        help="comma-separated paths for --model invscale runs (auto, trie, cache): one run kind each")
    parser.add_argument("--phase", default="loglikelihood", choices=sorted(PHASES))
    parser.add_argument("--dtype", default="float32", help="the model's dtype for both backends (bfloat16, say)")
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args()
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--model_args", f"pretrained={arguments.model},dtype={arguments.dtype}", "--include_path", arguments.include_path,
              "--tasks", arguments.tasks, "--num_fewshot", str(arguments.shots), "--device", "cpu", "--log_samples"]
    invscale = [sys.executable, "-m", "invscale", "lm-eval"]
    lm_eval = [os.path.join(os.path.dirname(sys.executable), "lm_eval")]
    kinds = {f"hf-batch{size}": [*lm_eval, "--model", "hf", *common, "--batch_size", size]
             for size in arguments.hf_batch_sizes.split(",")}
    for path in arguments.invscale_paths.split(","):
        kind = "invscale" if path == "auto" else f"invscale-{path}"
        kinds[kind] = [*invscale, "--model", "invscale", *common[:1], f"{common[1]},path={path}", *common[2:]]
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for round_number in range(arguments.rounds):
        for kind, command in kinds.items():
            folder = out / f"{kind}-{round_number}"
            marks = timed_run([*command, "--output_path", str(folder)], out / f"{kind}-{round_number}.log",
                              arguments.phase)
            runs[kind].append(marks)
            print(json.dumps({"round": round_number, "kind": kind, **{k: round(v, 2) for k, v in marks.items()}}),
                  flush=True)
    medians = {kind: {key: statistics.median(m[key] for m in marks) for key in marks[0]} for kind, marks in runs.items()}
    best_hf = min((kind for kind in kinds if kind.startswith("hf")), key=lambda kind: medians[kind]["phase"])
    ours = [kind for kind in kinds if kind.startswith("invscale")]
    summary = {"medians": medians, "best_hf": best_hf,
               "phase_ratio": {kind: medians[best_hf]["phase"] / medians[kind]["phase"] for kind in ours},
               "exit_ratio": {kind: medians[best_hf]["exit"] / medians[kind]["exit"] for kind in ours},
               "agreement": {kind: (agreement if arguments.phase == "loglikelihood" else generation_agreement)(
                   out / f"{best_hf}-0", out / f"{kind}-0") for kind in ours}, "runs": runs}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
