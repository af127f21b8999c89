"""invscale against lm-evaluation-harness's HF backend on a CPU: same rows, same model, same threads.

    pip install -e '.[lm-eval]'
    python bench/cpu_peers.py --model DIR [--rows 200] [--repeats 3] [--json out.json]

For each workload (the first ``--rows`` rows of the seed data's gambling.csv and triviaMod.csv,
and ``invscale generate triviamod --n ROWS --seed 0``) it times, interleaved and ``--repeats``
times each, with medians:

- scoring alone: invscale's ``ScoringJob`` and lm-eval's ``HFLM.loglikelihood`` on a model each
  loaded once beforehand (lm-eval at the best of ``--lm-eval-batches``, chosen by one timed run
  of each);
- whole commands as a user runs them: ``invscale score FILE --model DIR`` and ``lm_eval --model hf
  ... --tasks T`` on the same rows as a local task (``target_delimiter: ""``, so both score
  exactly prompt + class, as the prize pipeline does);
- and lm-eval with ``--model invscale`` (invscale's trie scorer inside lm-eval): scoring alone and
  ``invscale lm-eval --model invscale ...``, against ``--model hf``.

Before timing, the tools' per-option log-probs are compared (max |difference| is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "seed-data"


def workloads(rows: int, folder: Path) -> dict[str, Path]:
    """JSONL files of the three workloads (prize format)."""
    from invscale.data import read_dataset, write_dataset
    from invscale.generators import generate

    files = {}
    for name, source in (("gambling", "gambling.csv"), ("triviaMod", "triviaMod.csv")):
        dataset = read_dataset(str(SEED_DATA / source))
        dataset.rows = dataset.rows[:rows]
        files[name] = folder / f"{name}.jsonl"
        write_dataset(dataset, files[name])
    generated, _ = generate("triviamod", rows, 0)
    files["generated-triviamod"] = folder / "generated-triviamod.jsonl"
    write_dataset(generated, files["generated-triviamod"])
    return files


def lm_eval_task(name: str, path: Path, folder: Path) -> str:
    """Write an lm-eval task over ``path`` into ``folder``; return its name."""
    task = "invscale_bench_" + name.replace("-", "_").lower()
    from invscale.integrations.lm_eval import prize_task_yaml

    (folder / f"{task}.yaml").write_text(prize_task_yaml(task, path))
    return task


def median_seconds(runs: list[float]) -> float:
    return statistics.median(runs)


class Scorers:
    """Both tools' models, loaded once, and their scoring-alone timings."""

    def __init__(self, model: str):
        from lm_eval.models.huggingface import HFLM

        from invscale.models import load_model

        from invscale.integrations.lm_eval import InvscaleLM

        self.invscale = load_model(model, dtype="float32", device="cpu")
        self.hflm_for = lambda batch: HFLM(pretrained=model, dtype="float32", device="cpu", batch_size=batch)
        self._hflm = {"invscale": InvscaleLM(pretrained=model, dtype="float32", device="cpu")}

    def invscale_run(self, path: Path) -> tuple[float, dict]:
        from invscale.data import read_dataset
        from invscale.scoring.scorer import ScoringJob

        dataset = read_dataset(str(path))
        began = time.perf_counter()
        job = ScoringJob(self.invscale.model, self.invscale.tokenizer, dataset)
        results = {r["index"]: r["class_logprobs"] for r in job.results()}
        return time.perf_counter() - began, results

    def lm_eval_run(self, path: Path, batch: int | str) -> tuple[float, dict]:
        """lm-eval's loglikelihood on the rows: the HF backend at ``batch``, or ``"invscale"``."""
        from lm_eval.api.instance import Instance

        from invscale.data import read_dataset

        if batch not in self._hflm:
            self._hflm[batch] = self.hflm_for(batch)
        dataset = read_dataset(str(path))
        requests, owners = [], []
        for row in dataset.rows:
            for i, option in enumerate(row.classes):
                requests.append(Instance("loglikelihood", {}, (row.prompt, option), i))
                owners.append(row.index)
        began = time.perf_counter()
        answers = self._hflm[batch].loglikelihood(requests, disable_tqdm=True)
        seconds = time.perf_counter() - began
        results: dict[int, list[float]] = {}
        for owner, (logprob, _) in zip(owners, answers):
            results.setdefault(owner, []).append(logprob)
        return seconds, results


def whole_command(command: list[str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an HF checkpoint directory both tools load")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lm-eval-batches", default="4,8,16", help="batch sizes tried for lm-eval's best")
    parser.add_argument("--only", help="comma-separated workloads (gambling, triviaMod, generated-triviamod)")
    parser.add_argument("--no-commands", action="store_true", help="time scoring alone, not whole commands")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    folder = Path(tempfile.mkdtemp(prefix="invscale-peers-"))
    files = workloads(args.rows, folder)
    if args.only:
        files = {name: path for name, path in files.items() if name in args.only.split(",")}
    scorers = Scorers(args.model)
    figures = {"model": args.model, "rows": args.rows, "repeats": args.repeats, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "workloads": []}
    for name, path in files.items():
        _, ours = scorers.invscale_run(path)  # warm-up, and the log-probs to compare
        by_batch = {}
        for batch in map(int, args.lm_eval_batches.split(",")):
            by_batch[batch], theirs = scorers.lm_eval_run(path, batch)
        batch = min(by_batch, key=by_batch.get)
        difference = max(abs(a - b) for index in ours for a, b in zip(ours[index], theirs[index]))
        _, inside = scorers.lm_eval_run(path, "invscale")
        inside_difference = max(abs(a - b) for index in inside for a, b in zip(inside[index], theirs[index]))
        scoring = {"invscale": [], "lm-eval": [], "lm-eval-invscale": []}
        commands = {"invscale": [], "lm-eval": [], "lm-eval-invscale": []}
        task = lm_eval_task(name, path, folder)
        lm_eval_args = ["--model_args", f"pretrained={args.model},dtype=float32", "--device", "cpu", "--tasks", task,
                        "--include_path", str(folder)]
        for _ in range(args.repeats):  # interleaved, so drift in the machine's speed hits all alike
            scoring["invscale"].append(scorers.invscale_run(path)[0])
            scoring["lm-eval"].append(scorers.lm_eval_run(path, batch)[0])
            scoring["lm-eval-invscale"].append(scorers.lm_eval_run(path, "invscale")[0])
            if not args.no_commands:
                commands["invscale"].append(whole_command(
                    [sys.executable, "-m", "invscale.cli", "score", str(path), "--model", args.model, "--device", "cpu",
                     "--out", str(folder / f"{name}.results.jsonl"), "--overwrite"]))
                commands["lm-eval"].append(whole_command(
                    [sys.executable, "-m", "lm_eval", "--model", "hf", "--batch_size", str(batch), *lm_eval_args]))
                commands["lm-eval-invscale"].append(whole_command(
                    [sys.executable, "-m", "invscale.cli", "lm-eval", "--model", "invscale", *lm_eval_args]))
        row = {"workload": name, "lm_eval_batch": batch, "lm_eval_batch_seconds": by_batch,
               "max_abs_logprob_difference": difference, "lm_eval_invscale_max_abs_difference": inside_difference}
        for kind, runs in (("scoring", scoring), ("command", commands)):
            if runs["invscale"]:
                for tool in runs:
                    row[f"{kind}_{tool.replace('-', '_')}_s"] = median_seconds(runs[tool])
                row[f"{kind}_ratio"] = row[f"{kind}_lm_eval_s"] / row[f"{kind}_invscale_s"]
                row[f"{kind}_ratio_inside_lm_eval"] = row[f"{kind}_lm_eval_s"] / row[f"{kind}_lm_eval_invscale_s"]
        figures["workloads"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
