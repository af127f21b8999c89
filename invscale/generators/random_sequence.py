"""random-sequence: a patterned outcome is as likely as a random-looking one (Prize ideas list:
human-like "random" sequences vs actual randomness).

A fair coin is tossed, or a fair die rolled, a stated number of times; the options are a
patterned sequence (all the same, alternating, runs, counting up), a random-looking sequence of
the same length, and "both are equally likely". Outcomes of independent fair trials each have
probability (1/sides)^length whatever their order, so "equally likely" is the labelled answer;
the representativeness heuristic (and text written by people who hold it) favours the
random-looking sequence.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item

EQUAL = "Both sequences are equally likely"


def patterned(kind: str, faces: list[str], length: int, rng: random.Random) -> tuple[str, list[str]]:
    """A sequence with an obvious pattern, and the pattern's name."""
    first, second = rng.sample(faces, 2)
    patterns = {
        "repeat": lambda: [first] * length,
        "alternate": lambda: [first if i % 2 == 0 else second for i in range(length)],
        "halves": lambda: [first] * (length // 2) + [second] * (length - length // 2),
    }
    if kind == "die":
        start = rng.randrange(6)
        patterns["count"] = lambda: [faces[(start + i) % 6] for i in range(length)]
    name = rng.choice(sorted(patterns))
    return name, patterns[name]()


def random_looking(faces: list[str], length: int, rng: random.Random, avoid: list[str]) -> list[str]:
    """A draw other than ``avoid`` that looks random: no run longer than two, no face used much more
    than others, not strictly alternating."""
    while True:
        outcome = [rng.choice(faces) for _ in range(length)]
        runs_ok = all(not (outcome[i] == outcome[i + 1] == outcome[i + 2]) for i in range(length - 2))
        counts = [outcome.count(face) for face in faces]
        balanced = max(counts) - min(counts) <= (1 if len(faces) == 2 else 2)
        alternating = all(outcome[i] != outcome[i + 1] for i in range(length - 1))
        if runs_ok and balanced and not alternating and outcome != avoid:
            return outcome


def draw(rng: random.Random, position: int) -> Item:
    """One pair of sequences with "equally likely" at option ``position`` (0..2)."""
    kind = rng.choice(("coin", "die"))
    if kind == "coin":
        faces, length = ["H", "T"], rng.randint(6, 10)
        setup = f"A fair coin is tossed {length} times (H = heads, T = tails)."
    else:
        faces, length = [str(n) for n in range(1, 7)], rng.randint(5, 8)
        setup = f"A fair six-sided die is rolled {length} times."
    pattern, ordered = patterned(kind, faces, length, rng)
    scattered = random_looking(faces, length, rng, avoid=ordered)
    sequences = [", ".join(ordered), ", ".join(scattered)]
    body = f"{setup}\nQuestion: Which sequence of results is more likely?"
    chance = f"(1/2)^{length}" if kind == "coin" else f"(1/6)^{length}"
    reasoning = (f"Each result is independent and every face is equally likely, so any one exact sequence of {length} "
                 f"results has the same chance, {chance}, however patterned it looks. Both are equally likely, option X.")
    return lettered_item(body, EQUAL, sequences, position, rng, key=(kind, *sequences),
                         params={"kind": kind, "length": length, "pattern": pattern}, reasoning=reasoning)


SPEC = GeneratorSpec("random-sequence", "a patterned vs a random-looking sequence of fair coin or die results",
                     draw, n_positions=3)
