"""triviamod: following a pattern against a strong prior.

Every word of each question carries one extra leading letter (the same letter throughout a
question), and the instruction asks for the answer that also carries that letter. Of the four
options (answer, prefixed answer, wrong answer, prefixed wrong answer) only the prefixed correct
answer satisfies both the question and the stated pattern; models that lean on their knowledge
of the plain answer pick the unprefixed one. Worked examples in the preface show the pattern.
"""

from __future__ import annotations

import random
import string

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.trivia import TRIVIA

INSTRUCTION = ("In each question below, every word begins with one extra letter. Choose the answer that "
               "answers the question and also begins with that same extra letter.\n\n")


def draw(rng: random.Random, position: int) -> Item:
    """One disguised trivia question with the prefixed correct answer at ``position`` (0..3)."""
    question, answer, wrong = rng.choice(TRIVIA)
    letter = rng.choice(string.ascii_lowercase)
    distractor = rng.choice(wrong)
    disguised = " ".join(letter + word for word in question.split())
    reasoning = (f'Without the extra letter "{letter}" the question reads "{question}", whose answer is {answer}. '
                 f"Keeping the pattern, the answer begins with \"{letter}\" too: {letter + answer}, option X.")
    return lettered_item(f"Question: {disguised}", letter + answer, [answer, distractor, letter + distractor],
                         position, rng, key=(question, letter, distractor),
                         params={"letter": letter, "plain_answer": answer, "distractor": distractor}, topic=question,
                         reasoning=reasoning)


SPEC = GeneratorSpec("triviamod", "trivia with an extra letter on every word: answer and keep the pattern",
                     draw, n_positions=4, instruction=INSTRUCTION, default_shots=4)
