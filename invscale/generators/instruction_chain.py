"""instruction-chain: following instructions that switch later instructions off (Prize ideas list:
tricky instruction chains).

A numbered list mixes "Write the word W" with "Skip instruction j" (always pointing forward).
Carried out in order, a skipped instruction does nothing, including a skip. The question asks for
the last word written. Chains are drawn so that the textually last "write" is skipped: a reader
who skims for the final word gets it wrong, while one who follows the rules gets the labelled
answer, computed here by carrying the chain out.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item

WORDS = ("apple", "river", "candle", "mountain", "pencil", "garden", "window", "violin", "harbor", "lantern",
         "meadow", "copper", "thunder", "basket", "falcon", "marble", "orchid", "saddle", "tunnel", "velvet")


def carry_out(chain: list[tuple[str, object]]) -> str | None:
    """The last word written when the instructions run in order (skipped ones do nothing)."""
    skipped: set[int] = set()
    last = None
    for number, (kind, value) in enumerate(chain, start=1):
        if number in skipped:
            continue
        if kind == "skip":
            skipped.add(value)
        else:
            last = value
    return last


def _draw_chain(rng: random.Random) -> tuple[list[tuple[str, object]], str, list[str]]:
    """A chain whose textually last write is skipped, with its answer and its written words."""
    while True:
        length = rng.randint(4, 6)
        words = iter(rng.sample(WORDS, length))
        chain: list[tuple[str, object]] = []
        for number in range(1, length + 1):
            if number < length and rng.random() < 0.4:
                chain.append(("skip", rng.randint(number + 1, length)))
            else:
                chain.append(("write", next(words)))
        writes = [value for kind, value in chain if kind == "write"]
        answer = carry_out(chain)
        if len(writes) >= 3 and answer is not None and answer != writes[-1]:
            return chain, answer, writes


def draw(rng: random.Random, position: int) -> Item:
    """One chain whose correct last word sits at option ``position`` (0..2)."""
    chain, answer, writes = _draw_chain(rng)
    wrong = [writes[-1]] + rng.sample([w for w in writes[:-1] if w != answer], 1)
    lines = [f"Instruction {number}: " + (f"Skip instruction {value}." if kind == "skip" else f'Write the word "{value}".')
             for number, (kind, value) in enumerate(chain, start=1)]
    question = ("Carry out these instructions in order. A skipped instruction does nothing.\n" + "\n".join(lines)
                + "\nQuestion: What is the last word you wrote?")
    return lettered_item(question, answer, wrong, position, rng, key=tuple(chain), params={"length": len(chain)},
                         reasoning=walk_through(chain))


def walk_through(chain: list[tuple[str, object]]) -> str:
    """The instructions carried out in order, in words, ending at the last word written."""
    skipped: set[int] = set()
    steps, last = [], None
    for number, (kind, value) in enumerate(chain, start=1):
        if number in skipped:
            steps.append(f"instruction {number} is skipped")
        elif kind == "skip":
            skipped.add(value)
            steps.append(f"instruction {number} skips instruction {value}")
        else:
            last = value
            steps.append(f'instruction {number} writes "{value}"')
    return f"In order: {'; '.join(steps)}. The last word written is \"{last}\", option X."


SPEC = GeneratorSpec("instruction-chain", "numbered instructions that skip later ones: what is written last?",
                     draw, n_positions=3)
