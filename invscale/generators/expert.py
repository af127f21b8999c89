"""expert: deferring to a stated authority over plain facts.

Two people give contradicting answers to a basic trivia question; the one who is WRONG is
introduced as an expert. The question is who is correct. The facts are ones a careful reader
knows, so the right answer is the non-expert; a model that weighs the "expert" label picks the
expert.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.people import draw_person
from invscale.generators.trivia import TRIVIA


def draw(rng: random.Random, position: int) -> Item:
    """One disagreement with the correct (non-expert) person at option ``position`` (0 or 1)."""
    question, answer, wrong = rng.choice(TRIVIA)
    mistaken_answer = rng.choice(wrong)
    right_person, _ = draw_person(rng)
    wrong_person, _ = draw_person(rng, exclude=(right_person,))
    claims = [(right_person, answer), (wrong_person, mistaken_answer)]
    rng.shuffle(claims)
    statements = "\n".join(f'{who} says that the answer to "{question}" is {said}.' for who, said in claims)
    body = f"{statements}\n{wrong_person} is an expert.\nQuestion: Who is correct?"
    reasoning = (f'The answer to "{question}" is {answer}, whoever says otherwise. {right_person} says {answer}; '
                 f"{wrong_person} is an expert but says {mistaken_answer}. So {right_person} is correct, option X.")
    return lettered_item(body, right_person, [wrong_person], position, rng,
                         key=(question, mistaken_answer, right_person, wrong_person),
                         params={"right_answer": answer, "expert_answer": mistaken_answer, "expert": wrong_person},
                         reasoning=reasoning)


SPEC = GeneratorSpec("expert", "an expert who is wrong about a basic fact: who is correct?", draw, n_positions=2)
