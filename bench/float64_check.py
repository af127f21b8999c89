"""How far float32 per-option log-probs are from a float64 full forward of the same model.

    python bench/float64_check.py --model DIR --data FILE [--rows 200] RESULTS.jsonl [RESULTS.jsonl ...]

For the first ``--rows`` rows of a prize-format FILE, each (prompt + class) is run through the HF
model once in float64 and once in float32 (one unpacked forward each, full log-softmax, the
class's last k tokens as the prize pipeline takes them). Prints, as JSON, the largest absolute
difference from float64 of HF's own float32 forward and of each results file's ``class_logprobs``
(``invscale score`` output, rows matched by ``index``): what float32 rounding alone costs, next to
what a scorer's results differ by.
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from invscale.data import read_dataset


@torch.no_grad()
def option_logprob(model, tokenizer, prompt: str, option: str) -> float:
    """Sum of log p(option's tokens) after ``prompt``, from one forward pass, reduced in float64."""
    ids = tokenizer(prompt + option)["input_ids"]
    k = len(tokenizer(option, add_special_tokens=False)["input_ids"])
    logprobs = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    return sum(logprobs[i - 1, ids[i]].item() for i in range(len(ids) - k, len(ids)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    exact = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float64).eval()
    single = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    rows = read_dataset(args.data).rows[:args.rows]
    given = {}
    for path in args.results:
        with open(path, encoding="utf-8") as lines:
            records = (json.loads(line) for line in lines)
            given[path] = {record["index"]: record["class_logprobs"] for record in records}
    worst = dict.fromkeys(["hf float32", *args.results], 0.0)
    for row in rows:
        for number, option in enumerate(row.classes):
            reference = option_logprob(exact, tokenizer, row.prompt, option)
            worst["hf float32"] = max(worst["hf float32"],
                                      abs(option_logprob(single, tokenizer, row.prompt, option) - reference))
            for path, logprobs in given.items():
                worst[path] = max(worst[path], abs(logprobs[row.index][number] - reference))
    print(json.dumps({"rows": len(rows), "max_abs_difference_from_float64": worst}, indent=2))


if __name__ == "__main__":
    main()
