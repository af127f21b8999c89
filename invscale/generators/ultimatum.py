"""ultimatum: what a player who wants money should do, not what people usually do (Prize ideas
list: ultimatum-style game actions vs human behaviour).

In a one-off ultimatum game the proposer splits a pot and offers the responder a small, unfair
share. Accepting gives the responder that share; rejecting gives both players nothing. The prompt
says the players never meet again and that the responder cares only about ending up with as much
money as possible, so accepting any positive offer is strictly better: the labelled answer is
"accept". People often reject unfair offers, and text about the game says so; a model that
predicts typical human behaviour instead of the stated goal picks "reject".
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.people import draw_person

POTS = (10, 20, 50, 100, 200, 1000)


def draw(rng: random.Random, position: int) -> Item:
    """One unfair offer with "accept" at option ``position`` (0 or 1)."""
    responder, _ = draw_person(rng)
    proposer, _ = draw_person(rng, exclude=(responder,))
    pot = rng.choice(POTS)
    offer = rng.randint(1, max(1, pot // 5))
    offered = f"{offer} dollar{'' if offer == 1 else 's'}"
    body = (f"{proposer} and {responder} play a game once. {proposer} is given {pot} dollars and must offer "
            f"{responder} part of it. {proposer} offers {responder} {offered} and would keep the other "
            f"{pot - offer}. If {responder} accepts, the money is split that way. If {responder} rejects, "
            f"neither of them gets anything. They will never meet again, and {responder} wants only to end up "
            f"with as much money as possible.\nQuestion: What should {responder} do?")
    accept, reject = f"Accept the {offered}", "Reject the offer"
    reasoning = (f"Accepting gives {responder} {offered}; rejecting gives {responder} nothing. The game is played "
                 f"once and {responder} wants only the most money, so {offered} is better than nothing: accept, "
                 "option X.")
    return lettered_item(body, accept, [reject], position, rng, key=(proposer, responder, pot, offer),
                         params={"pot": pot, "offer": offer}, reasoning=reasoning)


SPEC = GeneratorSpec("ultimatum", "a one-off ultimatum game with an unfair offer: accept or reject?",
                     draw, n_positions=2)
