"""A GSM8K-style local lm-eval task for generate_until: arithmetic word problems with written
chains of thought, 8-shot (no hub).

    python bench/gsm8k_like.py --out DIR [--questions 100]     # writes DIR/gsm8k_like.yaml and data
    python bench/lm_eval_timing.py --phase generate_until --model M --tasks gsm8k_like --include-path DIR \\
        --shots 8 --hf-batch-sizes 8,16,32 --rounds 3 --out OUT

As lm-eval's ``gsm8k-cot``: the eight worked examples (``first_n`` of the dev split) each read
"Q: <question>\\nA: <chain> The answer is N.", the test question follows as "Q: ...\\nA:", and the
model writes until "Q:" or a blank line, at most 256 new tokens, greedily; ``exact_match`` on the
number after "The answer is". Every question shares the 8-shot preface. The problems are
two-step additions and subtractions whose chains are written out, so the answers are right.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ("Ava", "Ben", "Chloe", "Dan", "Ella", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kira", "Leo", "Maya", "Noah")
THINGS = ("apples", "marbles", "stickers", "books", "pencils", "shells", "coins", "stamps", "cards", "buttons")
TEMPLATE = """task: gsm8k_like
dataset_path: json
dataset_kwargs:
  data_files:
    dev: {dev}
    test: {test}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{answer}}}}"
target_delimiter: " "
fewshot_delimiter: "\\n\\n"
generation_kwargs:
  until: ["Q:", "\\n\\n"]
  do_sample: false
  max_gen_toks: 256
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "The answer is (\\\\-?[0-9\\\\.\\\\,]+)."
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def problem(rng: random.Random) -> dict:
    """A two-step word problem and its written chain."""
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    start, gained, lost = rng.randint(5, 60), rng.randint(2, 40), rng.randint(1, 30)
    middle = start + gained
    lost = min(lost, middle - 1)
    end = middle - lost
    question = (f"{name} has {start} {things}. {name} gets {gained} more {things} and then gives {lost} {things} to "
                f"a friend. How many {things} does {name} have now?")
    chain = (f"{name} starts with {start} {things}. After getting {gained} more, {name} has {start} + {gained} = "
             f"{middle}. After giving away {lost}, {name} has {middle} - {lost} = {end}. The answer is {end}.")
    return {"question": question, "answer": chain, "target": str(end)}



def write_task(folder: Path, questions: int = 100, seed: int = 0) -> None:
    """The task's YAML, its 8 worked examples (dev) and ``questions`` test problems."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("dev", 8), ("test", questions)):
        with open(folder / f"gsm8k_like-{split}.jsonl", "w") as handle:
            for _ in range(count):
                drawn = problem(rng)
                answer = drawn["answer"] if split == "dev" else drawn["target"]  # worked chain / the number to match
                handle.write(json.dumps({"question": drawn["question"], "answer": answer}) + "\n")
    (folder / "gsm8k_like.yaml").write_text(TEMPLATE.format(dev=(folder / "gsm8k_like-dev.jsonl").resolve(),
                                                            test=(folder / "gsm8k_like-test.jsonl").resolve()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--questions", type=int, default=100)
    arguments = parser.parse_args()
    write_task(Path(arguments.out), arguments.questions)
    print("gsm8k_like")


if __name__ == "__main__":
    main()
