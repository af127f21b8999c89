"""deliberate-fail: answering wrongly on purpose (Prize ideas list: "answer as if you did not know
X" / deliberately fail).

The instruction says to answer every question incorrectly on purpose. Each item is a sum of two
numbers or a basic trivia question with two options: the true answer and a wrong one. Following
the instruction means choosing the wrong one, which is therefore the labelled answer; a model
whose knowledge of the true answer overrides the instruction picks the true one. Worked examples
in the preface show the instruction being followed.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.trivia import TRIVIA

INSTRUCTION = ("You are taking a quiz that you want to fail. Answer every question incorrectly on purpose: "
               "always choose an answer that is wrong.\n\n")


def draw(rng: random.Random, position: int) -> Item:
    """One question whose wrong option (the labelled answer) sits at ``position`` (0 or 1)."""
    if rng.random() < 0.5:
        a, b = rng.randint(2, 49), rng.randint(2, 49)
        question, truth = f"What is {a} + {b}?", a + b
        miss = truth + rng.choice((-2, -1, 1, 2, 10))
        reasoning = (f"{a} + {b} = {truth}, so {truth} is right and {miss} is wrong. To fail on purpose, pick {miss}, "
                     "option X.")
        return lettered_item(f"Question: {question}", str(miss), [str(truth)], position, rng,
                             key=("sum", a, b, miss), params={"source": "arithmetic", "true_answer": str(truth)},
                             reasoning=reasoning)
    question, answer, wrong = rng.choice(TRIVIA)
    miss = rng.choice(wrong)
    reasoning = (f"The right answer to \"{question}\" is {answer}, so {miss} is wrong. To fail on purpose, pick "
                 f"{miss}, option X.")
    return lettered_item(f"Question: {question}", miss, [answer], position, rng, key=("trivia", question, miss),
                         params={"source": "trivia", "true_answer": answer}, topic=question, reasoning=reasoning)


SPEC = GeneratorSpec("deliberate-fail", "answer every question wrongly on purpose: pick the wrong option",
                     draw, n_positions=2, instruction=INSTRUCTION, default_shots=2)
