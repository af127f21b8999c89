"""An MMLU-like local lm-eval task (generated text, no hub) and the tokens each scorer computes on it.

    python bench/mmlu_like.py tasks --out DIR [--long]         # writes DIR/*.yaml and data, prints --tasks
    lm_eval --model hf --model_args pretrained=M,dtype=float32 --include_path DIR --tasks T \\
        --num_fewshot 5 --batch_size 8 --device cpu --log_samples --output_path OUT
    invscale lm-eval --model invscale --model_args pretrained=M,dtype=float32 ...   # the same otherwise
    python bench/mmlu_like.py tokens --model M --samples OUT [--pack 1024]
    python bench/mmlu_like.py prize --samples OUT --out FILE.jsonl   # the logged questions as prize rows
    python bench/lm_eval_timing.py --model M --tasks T --include-path DIR ...   # both, timed, interleaved

Eight subjects of 40 test and 5 dev questions each, in lm-eval's MMLU template (the subject's
description, five worked examples from the dev split in order, ``first_n``, then the question,
options A-D and "Answer:"), so every question of a subject shares its 5-shot prefix and subjects
part after "…about". ``--long`` writes the ``mmlu_long_*`` tasks instead: the same
template with questions and options 2.5 times as long, so the shared 5-shot prefixes are too.
``tokens`` rebuilds the run's requests from lm-eval's logged samples,
tokenized as lm-eval tokenizes them, and reports the naive tokens (one sequence per option), what
lm-eval's HF backend computes (each distinct context + continuation but its last token, once), the
fewest any exact scorer can (distinct prefixes), what invscale computes at a pack size, and what
its cache path computes (``--path cache`` for a model whose cache probes as ``multi``).
"""

from __future__ import annotations

import argparse
import glob
import json
import random
from pathlib import Path

SUBJECTS = ("astronomy", "botany", "chemistry", "economics", "geology", "history", "linguistics", "music")
WORDS = ("the of and to in is was for on that with as by at from this have or one had not but what all were when "
         "which their said if do will each about how up out them then many some so these would other into has more "
         "two like time could make than first been its who now people made over did down only way find use may water "
         "long little very after words called just where most know get through back much before go good new write").split()
TEMPLATE = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    dev: {dev}
    test: {test}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
"""


LONG = 2.5  # ``--long``: questions and options this many times as long (so the 5-shot prefixes too)


def _question(rng: random.Random, subject: str, scale: float = 1.0) -> dict:
    words = [rng.choice(WORDS) for _ in range(rng.randint(round(8 * scale), round(30 * scale)))]
    words.insert(rng.randrange(len(words)), subject)
    return {"question": " ".join(words).capitalize() + "?",
            "choices": [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, round(5 * scale)))) for _ in range(4)],
            "answer": rng.randrange(4)}


def write_tasks(folder: Path, questions: int = 40, seed: int = 0, long: bool = False) -> list[str]:
    """The subjects' data and task files in ``folder``; their task names (``mmlu_like_*``, or with
    ``long`` ``mmlu_long_*``: questions and options :data:`LONG` times as long)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, names = random.Random(seed), []
    kind = "long" if long else "like"
    for subject in SUBJECTS:
        for split, count in (("dev", 5), ("test", questions)):
            with open(folder / f"{subject}_{kind}_{split}.jsonl", "w") as handle:
                for _ in range(count):
                    handle.write(json.dumps(_question(rng, subject, LONG if long else 1.0)) + "\n")
        names.append(f"mmlu_{kind}_{subject}")
        (folder / f"{names[-1]}.yaml").write_text(TEMPLATE.format(
            task=names[-1], subject=subject, dev=folder / f"{subject}_{kind}_dev.jsonl",
            test=folder / f"{subject}_{kind}_test.jsonl"))
    return names


def logged_samples(samples: str):
    """(sample, its requests' (context, continuation) pairs) for every sample lm-eval logged under
    ``samples``, file by file in name order."""
    for path in sorted(glob.glob(str(Path(samples) / "**" / "samples_*.jsonl"), recursive=True)):
        for line in open(path):
            sample = json.loads(line)
            arguments = sample["arguments"]
            yield sample, [(argument["arg_0"], argument["arg_1"]) if isinstance(argument, dict) else tuple(argument)
                           for argument in (arguments.values() if isinstance(arguments, dict) else arguments)]


def requests_of(samples: str) -> list[tuple[str, str]]:
    """(context, continuation) of every loglikelihood request in lm-eval's logged samples."""
    return [pair for _, pairs in logged_samples(samples) for pair in pairs]


def token_figures(model: str, samples: str, pack: int) -> dict:
    """Tokens computed by each way of scoring the logged run's requests."""
    from lm_eval.models.huggingface import HFLM

    from invscale.scoring.cache_runner import plan_contexts
    from invscale.scoring.trie import SequenceRef, build_packs, common_prefix, tokens_computed, units_of_sequences

    lm = HFLM(pretrained=model, device="cpu", dtype="float32")
    sequences = []
    for context, continuation in requests_of(samples):
        context_tokens, continuation_tokens = lm._encode_pair(context, continuation)
        sequences.append((tuple(context_tokens) + tuple(continuation_tokens), len(continuation_tokens)))
    distinct = sorted(set(sequences))
    preface = common_prefix(tokens for tokens, _ in distinct)
    refs = [SequenceRef(n, tokens[len(preface):], k) for n, (tokens, k) in enumerate(distinct)]
    units = units_of_sequences(refs)
    packs, _ = build_packs(units, pack, preface, stacks=True)
    contexts = ((unit.stem, [(refs[i].tokens[len(unit.stem):], refs[i].n_target) for i in unit.seq_ids], unit.seq_ids)
                for unit in units)
    runs = list(plan_contexts("multi", preface, contexts, lambda ids: True))
    return {"requests": len(sequences), "naive_tokens": sum(len(t) for t, _ in sequences),
            "lm_eval_hf_tokens": sum(len(t) for t in {tokens[:-1] for tokens, _ in sequences}),
            "fewest_tokens": len({tokens[:i] for tokens, _ in distinct for i in range(1, len(tokens))}),
            "invscale_tokens": len(preface) + tokens_computed(packs), "pack": pack, "packs": len(packs),
            "invscale_cache_tokens": len(preface) + sum(batch.n_tokens for run in runs for batch in run),
            "cache_runs": len(runs)}


def prize_rows(samples: str) -> list[dict]:
    """The logged run's questions as prize-format rows: lm-eval's context as the prompt, its
    continuations (" A" … " D") as the classes, the target as the answer index."""
    return [{"prompt": pairs[0][0], "classes": [continuation for _, continuation in pairs],
             "answer_index": int(sample["target"])} for sample, pairs in logged_samples(samples)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tasks = commands.add_parser("tasks")
    tasks.add_argument("--out", required=True)
    tasks.add_argument("--questions", type=int, default=40)
    tasks.add_argument("--long", action="store_true", help=f"questions and options {LONG} times as long")
    tokens = commands.add_parser("tokens")
    tokens.add_argument("--model", required=True)
    tokens.add_argument("--samples", required=True)
    tokens.add_argument("--pack", type=int, default=1024)
    prize = commands.add_parser("prize")
    prize.add_argument("--samples", required=True)
    prize.add_argument("--out", required=True)
    arguments = parser.parse_args()
    if arguments.command == "prize":
        with open(arguments.out, "w") as handle:
            for row in prize_rows(arguments.samples):
                handle.write(json.dumps(row) + "\n")
    elif arguments.command == "tasks":
        print(",".join(write_tasks(Path(arguments.out).resolve(), arguments.questions, long=arguments.long)))
    else:
        print(json.dumps(token_figures(arguments.model, arguments.samples, arguments.pack), indent=2))


if __name__ == "__main__":
    main()
