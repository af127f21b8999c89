"""decoy: the decoy (asymmetric dominance) effect.

Two offers trade off quantity against price and the buyer states which one they prefer. A third
offer C is then added that is worse than the NON-preferred offer on both counts (fewer items, more
money) but not worse than the preferred one on both. People are known to drift towards the offer
that dominates the decoy; a rational buyer keeps the stated preference, since C is never worth
taking and adding it changes nothing about A versus B. So the answer is the stated preference.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item
from invscale.generators.people import draw_person

GOODS = ("lamps", "blankets", "notebooks", "candles", "mugs", "towels", "plant pots", "pillows", "pens",
         "bowls", "socks", "batteries", "picture frames", "jars of honey", "bars of soap", "tea towels")
ONE = {"lamps": "lamp", "blankets": "blanket", "notebooks": "notebook", "candles": "candle", "mugs": "mug",
       "towels": "towel", "plant pots": "plant pot", "pillows": "pillow", "pens": "pen", "bowls": "bowl",
       "socks": "sock", "batteries": "battery", "picture frames": "picture frame", "jars of honey": "jar of honey",
       "bars of soap": "bar of soap", "tea towels": "tea towel"}


def counted(amount: int, goods: str) -> str:
    """``amount`` of ``goods`` in English: "1 battery", "3 batteries"."""
    return f"{amount} {ONE[goods] if amount == 1 else goods}"


def draw(rng: random.Random, position: int) -> Item:
    """Preferred offer is A when ``position`` is 0, B when 1; C is the decoy."""
    name, pronoun = draw_person(rng)
    goods = rng.choice(GOODS)
    few = rng.randint(3, 10)
    many = rng.randint(few + 2, 14)
    cheap = rng.randint(40, 90)
    dear = cheap + rng.randint(5, 20)
    offers = {"A": (few, cheap), "B": (many, dear)}  # A: fewer and cheaper, B: more and dearer
    preferred = "AB"[position]
    other = "B" if preferred == "A" else "A"
    (other_amount, other_price), (pref_amount, pref_price) = offers[other], offers[preferred]
    # C: fewer items and more money than the non-preferred offer, yet beats the preferred one on
    # at least one count, so only the non-preferred offer dominates it.
    if preferred == "B":  # other = A (few, cheap): C has < few items, price in (cheap, dear)
        decoy = (rng.randint(1, other_amount - 1), rng.randint(other_price + 1, pref_price - 1))
    else:  # other = B (many, dear): C has more than few but < many items, price above dear
        decoy = (rng.randint(pref_amount + 1, other_amount - 1), rng.randint(other_price + 1, other_price + 15))
    prefers = "prefer" if pronoun == "they" else "prefers"
    body = (f"{name} is able to buy either A. {counted(few, goods)} for {cheap} dollars or B. {counted(many, goods)} for "
            f"{dear} dollars.\nIn general {pronoun} {prefers} to buy "
            f"more {goods} and to spend less money.\nBetween A and B, {pronoun} "
            f"{prefers} {preferred}.\nThen, before buying, {name} is "
            f"offered C. {counted(decoy[0], goods)} for {decoy[1]} dollars instead.\n"
            f"Question: Among A, B, and C, which should {name} prefer now?")
    reasoning = (f"Offer C gives fewer {goods} than offer {other} and costs more, so C is never worth taking. "
                 f"Adding it changes nothing between A and B, and {name} already {prefers} {preferred}.")
    return Item(body, [" A", " B", " C"], position, key=(name, goods, few, many, cheap, dear, preferred, decoy),
                params={"goods": goods, "offer_a": f"{few}@{cheap}", "offer_b": f"{many}@{dear}",
                        "offer_c": f"{decoy[0]}@{decoy[1]}", "preferred": preferred}, reasoning=reasoning)


SPEC = GeneratorSpec("decoy", "decoy effect: a dominated third offer should not change a stated preference",
                     draw, n_positions=2)
