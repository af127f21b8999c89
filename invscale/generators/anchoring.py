"""anchoring: an irrelevant number in the question pulls a numeric estimate towards it.

The prize's anchoring tasks, in its ``numeric`` format: each question is asked three times, as a
triple of rows in this order: the control (no anchor), then after "Is it greater than L?" with the
low anchor L = int(0.5 × the true value), then after "Is it less than H?" with the high anchor
H = int(1.5 × the true value), as the prize pipeline wrote its anchoring data. The model's answer
is sampled and read as a number; the anchoring loss of a triple,
(high/control − 1)² + (low/control − 1)², is 0 when the anchors leave the estimate alone.

The questions are unit conversions and counts with exact answers (minutes in D days, legs of N
spiders, ...), so the true value is right by arithmetic, not by recall; the anchor sentence asks
nothing the question needs. Rows: ``prompt``, ``true_answer``, ``anchor`` (the control's is the true
value, as in the prize's files), plus ``kind``, ``count`` and ``role`` (control, low, high).

``anchoring-choice`` asks the same questions as multiple choice, for scoring without sampling: the
two options are the true value and the anchor value (0.5 or 1.5 × the true value). The low and
high rows say the anchor first ("Is it greater than L?"); a control row asks with no anchor
sentence, its wrong option drawn from the same two factors. The true value is labelled, by the
same arithmetic; an anchored model moves towards the anchor option on anchored rows more than on
controls.
"""

from __future__ import annotations

import random
from typing import Callable

from invscale.generators.base import Generated, GeneratorSpec, Item, lettered_item

# (kind, question with {n}, value per unit, smallest and largest n)
QUESTIONS = (
    ("minutes-in-days", "How many minutes are there in {n} days?", 1440, 2, 40),
    ("hours-in-weeks", "How many hours are there in {n} weeks?", 168, 2, 60),
    ("seconds-in-hours", "How many seconds are there in {n} hours?", 3600, 2, 30),
    ("days-in-years", "How many days are there in {n} years of 365 days?", 365, 2, 90),
    ("spider-legs", "How many legs do {n} spiders have in total?", 8, 12, 400),
    ("car-wheels", "How many wheels do {n} cars have in total?", 4, 15, 600),
    ("eggs-in-dozens", "How many eggs are there in {n} dozen eggs?", 12, 6, 300),
    ("hexagon-sides", "How many sides do {n} hexagons have in total?", 6, 12, 500),
    ("centimetres-in-metres", "How many centimetres are there in {n} metres?", 100, 3, 200),
    ("grams-in-kilograms", "How many grams are there in {n} kilograms?", 1000, 2, 90),
)
ANSWER = "A: The answer is"
ADJUSTMENTS = (("control", 1.0), ("low", 0.5), ("high", 1.5))  # the prize pipeline's order and factors


def _draw(rng: random.Random, seen: set) -> tuple[str, str, int, int] | None:
    """(kind, question, count, true value) not drawn before, or None when 200 draws found none."""
    for _ in range(200):
        kind, template, unit, low, high = rng.choice(QUESTIONS)
        count = rng.randint(low, high)
        if (kind, count) not in seen:
            seen.add((kind, count))
            return kind, template.format(n=count), count, count * unit
    return None


def _prompt(preface: str, question: str, role: str, anchor: int) -> str:
    if role == "control":
        return f"{preface}Q: {question}\n{ANSWER}"
    comparison = "greater" if role == "low" else "less"
    return f"{preface}Q: Is it {comparison} than {anchor}?\n{question}\n{ANSWER}"


def generate_anchoring(n: int, seed: int, shots: int | None = None,
                       on_drawn: Callable[[int], None] | None = None) -> Generated:
    """``n`` rows (whole triples) of anchored and control questions after ``shots`` worked
    examples (default 1, as the prize's files), seeded by ``seed``."""
    if n < 3 or n % 3:
        raise ValueError(f"anchoring: --n {n}: its rows come in triples (control, low anchor, high anchor); give a "
                         "multiple of 3")
    shots = 1 if shots is None else shots
    rng, seen = random.Random(seed), set()
    examples = [_draw(rng, seen) for _ in range(shots)]
    preface = "".join(f"Q: {question}\n{ANSWER} {value}.\n\n" for _, question, _, value in examples)
    records, notes = [], []
    for _ in range(n // 3):
        drawn = _draw(rng, seen)
        if drawn is None:
            notes.append(f"anchoring: found only {len(records) // 3} distinct questions; the other rows repeat them")
            break
        kind, question, count, value = drawn
        for role, factor in ADJUSTMENTS:
            anchor = int(value * factor)
            records.append({"prompt": _prompt(preface, question, role, anchor), "true_answer": value, "anchor": anchor,
                            "task": "anchoring", "seed": seed, "shots": shots, "kind": kind, "count": count,
                            "role": role})
    distinct = len(records)
    records += [records[i % distinct] for i in range(n - distinct)]
    if on_drawn is not None:
        on_drawn(n)
    return Generated(records, preface, notes)


def draw_choice(rng: random.Random, position: int) -> Item:
    """One question as a choice between its true value and an anchor value, the true value at
    option ``position`` (0 or 1); ``role`` says whether the prompt states the anchor first."""
    kind, template, unit, low, high = rng.choice(QUESTIONS)
    count = rng.randint(low, high)
    value = count * unit
    role = rng.choice(("control", "low", "high"))
    factor = dict(ADJUSTMENTS)[role] if role != "control" else rng.choice((0.5, 1.5))
    anchor = int(value * factor)
    question = template.format(n=count)
    stated = "" if role == "control" else f"Is it {'greater' if role == 'low' else 'less'} than {anchor}? "
    reasoning = (f"{count} × {unit} = {value}; the other number only appears in the question, it is not the answer. "
                 f"The right answer is {value}, option X.")
    return lettered_item(f"Q: {stated}{question}", str(value), [str(anchor)], position, rng,
                         key=(kind, count, role), params={"kind": kind, "count": count, "role": role, "anchor": anchor},
                         reasoning=reasoning)


CHOICE_SPEC = GeneratorSpec("anchoring-choice", "anchoring as a choice: the true value or the anchor value",
                            draw_choice, n_positions=2)
