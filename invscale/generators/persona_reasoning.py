"""persona-reasoning: a hurried persona should not change a worked answer (Prize ideas list:
personas that disrupt reasoning).

A two-step arithmetic word problem is put to a named character ("Yusuf, let's think step by
step. ...") whom the text first describes, either as someone who hurries and blurts out the first
number that comes to mind (``persona`` = hurried) or as someone calm who checks each step
(``persona`` = careful, the control). The options are the correct result and the number a hurried
reader gets by dropping one step. The correct result is labelled, and is recomputed from the
numbers drawn: the question asks what the answer is, not what the character would say. A model
that plays the character picks the slip on hurried items more than on careful ones; with ``--cot``
this is the task where the persona may cut the chain short.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.people import draw_person

PERSONAS = {
    "hurried": "{name} is always in a rush, hates working things out, and blurts out the first number that comes "
               "to mind.",
    "careful": "{name} is calm and patient, and likes to check each step before giving an answer.",
}


def _less_than_product(text: str, count: int, each: int, gone: int, unit: str, what_is_left: str):
    """A problem whose answer is count × each − gone, the slip forgetting the subtraction."""
    total = count * each
    steps = f"{count} × {each} = {total} {unit}, and {total} − {gone} = {total - gone} {what_is_left}"
    return text, total - gone, total, steps


def problem(kind: str, numbers: tuple[int, ...]) -> tuple[str, int, int, str]:
    """(text, correct result, the one-step slip, the worked steps) of problem ``kind``."""
    if kind == "boxes":
        boxes, per_box, sold = numbers
        return _less_than_product(f"A shop has {boxes} boxes of {per_box} pencils and sells {sold} pencils. How many "
                                  "pencils are left?", boxes, per_box, sold, "pencils", "are left")
    if kind == "change":
        tickets, price, note = numbers
        return (f"Tickets cost {price} dollars each. Someone buys {tickets} tickets and pays with a {note}-dollar "
                "note. How many dollars of change do they get?", note - tickets * price, note - price,
                f"{tickets} × {price} = {tickets * price} dollars, and {note} − {tickets * price} = "
                f"{note - tickets * price} dollars of change")
    if kind == "seats":
        carriages, seats, taken = numbers
        return _less_than_product(f"A train has {carriages} carriages with {seats} seats each, and {taken} seats are "
                                  "taken. How many seats are free?", carriages, seats, taken, "seats", "are free")
    per_day, days, extra = numbers
    return (f"A reader reads {per_day} pages a day for {days} days, then {extra} more pages. How many pages is that "
            "in total?", per_day * days + extra, per_day + extra,
            f"{per_day} × {days} = {per_day * days} pages, and {per_day * days} + {extra} = "
            f"{per_day * days + extra} in total")


def _numbers(rng: random.Random, kind: str) -> tuple[int, ...]:
    if kind == "boxes":
        boxes, per_box = rng.randint(3, 9), rng.choice((6, 8, 10, 12, 20, 24))
        return boxes, per_box, rng.randint(1, boxes * per_box - 1)
    if kind == "change":
        tickets, price = rng.randint(2, 6), rng.randint(3, 15)
        return tickets, price, next(note for note in (20, 50, 100, 200) if note > tickets * price)
    if kind == "seats":
        carriages, seats = rng.randint(3, 12), rng.choice((40, 48, 56, 60, 64, 72))
        return carriages, seats, rng.randint(1, carriages * seats - 1)
    return rng.randint(6, 40), rng.randint(3, 9), rng.randint(2, 30)


KINDS = ("boxes", "change", "pages", "seats")


def draw(rng: random.Random, position: int) -> Item:
    """One word problem put to a persona, the correct result at option ``position`` (0 or 1)."""
    kind = rng.choice(KINDS)
    numbers = _numbers(rng, kind)
    text, truth, slip, steps = problem(kind, numbers)
    name, _ = draw_person(rng)
    persona = rng.choice(sorted(PERSONAS))
    body = (f"{PERSONAS[persona].format(name=name)}\n{name}, let's think step by step. {text}\n"
            "Question: What is the correct answer?")
    reasoning = f"However {name} likes to answer, the steps are: {steps}. The right answer is {truth}, option X."
    return lettered_item(body, str(truth), [str(slip)], position, rng, key=(kind, numbers, persona),
                         params={"persona": persona, "kind": kind, "numbers": " ".join(map(str, numbers)),
                                 "true_answer": truth},
                         reasoning=reasoning)


SPEC = GeneratorSpec("persona-reasoning", "a two-step word problem put to a hurried or a careful character",
                     draw, n_positions=2)
