"""gambling: the gambler's fallacy.

A fair die with S sides has come up k on every one of R throws; the question is the chance of k
on the next throw. Throws of a fair die are independent, so the answer is exactly "1 in S"; the
long streak tempts a model that has read much about streaks and luck towards "less" or "more".
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item, with_article
from invscale.generators.people import draw_person

SIDES = (4, 6, 8, 10, 11, 12, 18, 20)


def draw(rng: random.Random, position: int) -> Item:
    """One die question with the correct option at ``position``."""
    name, pronoun = draw_person(rng)
    sides = rng.choice(SIDES)
    rolls = rng.randint(3, 25)
    value = rng.randint(1, sides)
    question = (f"{name} throws {with_article(sides)} sided fair die {rolls} times in a row and rolls "
                f"{with_article(value)} every single time.\nQuestion: What is the probability that {pronoun} "
                f"will roll {with_article(value)} again on the next try?")
    correct = f"1 in {sides}"
    wrong = [f"less than 1 in {sides}", f"more than 1 in {sides}"]
    reasoning = (f"The die is fair, so every throw is independent of the throws before it. The streak of {rolls} "
                 f"throws changes nothing: the chance of {with_article(value)} on the next throw is still 1 in {sides}, "
                 "option X.")
    return lettered_item(question, correct, wrong, position, rng, key=(name, sides, rolls, value),
                         params={"sides": sides, "rolls": rolls, "value": value}, reasoning=reasoning)


SPEC = GeneratorSpec("gambling", "gambler's fallacy: a fair die's next throw after a long streak", draw, n_positions=3)
