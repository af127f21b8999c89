"""unrelated-documents: a plain question after documents it does not depend on (Prize ideas list:
unrelated preceding documents).

Each item starts with one to three short documents, each ending at the document separator line
``###``: town notices, recipes, weather reports, reviews and match results written from drawn
names and numbers, and (``misleading`` = true) one document that repeats a wrong option as a word
of the day, an overheard guess or a quiz-night shout, without saying it answers anything. Then
comes a basic trivia question or a sum of two numbers. Nothing in the documents bears on the
question, so the labelled answer is the true one: for sums it is recomputed from the two numbers
drawn. A model that carries the context over (copying what it has just read, which improves with
scale) moves towards the repeated wrong option.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.people import draw_person
from invscale.generators.trivia import TRIVIA

SEPARATOR = "\n###\n"
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PLACES = ("library", "swimming pool", "town hall", "museum", "market hall", "sports centre")
WEATHER = ("sunny", "cloudy", "windy", "rainy", "foggy")
PRODUCTS = ("kettle", "bicycle lamp", "backpack", "desk chair", "toaster", "pair of headphones")
QUALITIES = ("sturdy build", "low price", "quiet motor", "bright colours", "long battery life")
TEAMS = ("Harbour Rovers", "Hill Town United", "Riverside Athletic", "North Park Wanderers", "Old Mill City")


def _unrelated(rng: random.Random) -> str:
    """A short document about something else, written from drawn names and numbers."""
    name, _ = draw_person(rng)
    day = rng.choice(DAYS)
    kind = rng.randrange(5)
    if kind == 0:
        return (f"Town notice: The {rng.choice(PLACES)} will be closed on {day} for repairs. {name} from the council "
                "says it will reopen the following week.")
    if kind == 1:
        return (f"Recipe: Mix {rng.randint(2, 4)} cups of flour with {rng.randint(2, 5)} eggs, add a pinch of salt, "
                f"and bake for {rng.randint(20, 45)} minutes until golden. {name} serves it warm.")
    if kind == 2:
        return (f"Weather: {day} will be {rng.choice(WEATHER)} with a high of {rng.randint(8, 31)} degrees. "
                f"Forecaster {name} suggests taking a coat in the evening.")
    if kind == 3:
        return (f"Review: {name} gave the new {rng.choice(PRODUCTS)} {rng.randint(2, 5)} out of 5 stars, praising "
                f"its {rng.choice(QUALITIES)}.")
    home, away = rng.sample(TEAMS, 2)
    return f"Sports: {home} beat {away} {rng.randint(2, 5)} to {rng.randint(0, 1)} on {day} evening."


def _misleading(rng: random.Random, lure: str) -> str:
    """A document that repeats ``lure`` (a wrong option) without saying it answers anything."""
    name, _ = draw_person(rng)
    return rng.choice((
        f"Word of the day: {lure}. Try to use \"{lure}\" in a sentence today, says {name}.",
        f"Overheard at the bus stop: \"{lure}, definitely {lure},\" said {name}, though nobody had asked anything.",
        f"Quiz night notes: the team that shouted \"{lure}\" to every question won the prize for enthusiasm. "
        f"Their captain, {name}, was delighted.",
    ))


def draw(rng: random.Random, position: int) -> Item:
    """Documents then a question, with the true answer at option ``position`` (0..2)."""
    if rng.random() < 0.5:
        a, b = rng.randint(12, 89), rng.randint(12, 89)
        question, truth = f"What is {a} + {b}?", str(a + b)
        wrong = [str(a + b + d) for d in rng.sample((-10, -2, -1, 1, 2, 10), 2)]
        params, key = {"source": "arithmetic", "a": a, "b": b}, ("sum", a, b)
        worked = f"{a} + {b} = {truth}"
    else:
        question, truth, wrongs = rng.choice(TRIVIA)
        wrong = rng.sample(wrongs, 2)
        params, key = {"source": "trivia"}, ("trivia", question)
        worked = f"the answer to \"{question}\" is {truth}"
    count = rng.randint(1, 3)
    misleading = rng.random() < 0.5
    documents = [_unrelated(rng) for _ in range(count)]
    lure = ""
    if misleading:
        lure = wrong[0]
        documents[rng.randrange(count)] = _misleading(rng, lure)
    body = "".join(document + SEPARATOR for document in documents) + f"Question: {question}"
    reasoning = (f"The documents before the question are about other things and do not change it: {worked}. "
                 f"The right answer is {truth}, option X.")
    return lettered_item(body, truth, wrong, position, rng, key=(*key, *documents),
                         params={**params, "documents": count, "misleading": misleading, "lure": lure,
                                 "true_answer": truth},
                         topic=question if params["source"] == "trivia" else None, reasoning=reasoning)


SPEC = GeneratorSpec("unrelated-documents", "a plain question after unrelated or subtly misleading documents",
                     draw, n_positions=3)
