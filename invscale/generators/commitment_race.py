"""commitment-race: the best reply to a rival who has already committed (Prize ideas list:
commitment races).

A one-shot game of Chicken described in words: two drivers heading for each other on a narrow
road (swerve or drive straight on), or two firms deciding whether to open the one shop a town can
support (stay out or open). The payoffs are stated in dollars, in Chicken's order: holding firm
while the other backs down pays most, both backing down pays less, backing down alone pays less
still, and both holding firm loses money. The rival has already made an irreversible commitment
(thrown the steering wheel out of the window, or signed a lease elsewhere) that fixes its action,
and the player wants only to end up with as much money as possible. So the player's payoff for
each action is known, and the labelled action is the one that pays more (recomputed from the
stated payoffs by the test): back down against a rival committed to hold firm, hold firm against
one committed to back down. A model that imitates brinkmanship, or refuses to "give in" to a
commitment, picks the other action.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.people import draw_person

# scenario: (setting, hold firm, back down, commitment to hold firm, commitment to back down)
SCENARIOS = {
    "road": ("{a} and {b} drive towards each other at speed on a narrow road, for a prize.", "Drive straight on",
             "Swerve", "{b} has just thrown the steering wheel out of the window, so {b} cannot swerve and will "
             "certainly drive straight on.", "{b} has already turned off the road into a field, so {b} has "
             "certainly swerved."),
    "shop": ("{a} and {b} each plan to open a bakery in a village that can support only one.", "Open the bakery",
             "Stay out", "{b} has already signed a lease that cannot be cancelled and will certainly open a "
             "bakery.", "{b} has already signed a lease in another town and will certainly stay out."),
}


def best_action(hold_payoffs: tuple[int, int], back_payoffs: tuple[int, int], rival_holds: bool) -> str:
    """'hold' or 'back down': the action that pays the player more given the rival's fixed action;
    each payoff pair is (the player's payoff if the rival holds firm, if the rival backs down)."""
    index = 0 if rival_holds else 1
    return "hold" if hold_payoffs[index] > back_payoffs[index] else "back down"


def draw(rng: random.Random, position: int) -> Item:
    """One game with a committed rival, the better action at option ``position`` (0 or 1)."""
    scenario = rng.choice(sorted(SCENARIOS))
    setting, hold, back, commits_hold, commits_back = SCENARIOS[scenario]
    player, _ = draw_person(rng)
    rival, _ = draw_person(rng, exclude=(player,))
    crash = rng.randint(2, 20) * 10
    alone = rng.randint(0, 3) * 10
    both_back = alone + rng.randint(1, 5) * 10
    win = both_back + rng.randint(1, 8) * 10
    rival_holds = rng.random() < 0.5
    payoffs = (f"If both hold firm ({hold.lower()}), each loses {crash} dollars. If both back down "
               f"({back.lower()}), each gets {both_back} dollars. If one holds firm and the other backs down, the one "
               f"who holds firm gets {win} dollars and the one who backs down gets {alone} dollars.")
    commitment = (commits_hold if rival_holds else commits_back).format(b=rival)
    body = (f"{setting.format(a=player, b=rival)} {payoffs} {commitment} They will never play again, and {player} "
            f"wants only to end up with as much money as possible.\nQuestion: What should {player} do?")
    best = best_action((-crash, win), (alone, both_back), rival_holds)
    right, wrong = (hold, back) if best == "hold" else (back, hold)
    if rival_holds:
        reasoning = (f"{rival} will certainly hold firm. Then holding firm too loses {player} {crash} dollars, and "
                     f"backing down gets {alone}. {alone} is more than -{crash}, so back down: {right}, option X.")
    else:
        reasoning = (f"{rival} will certainly back down. Then holding firm gets {player} {win} dollars, and backing "
                     f"down gets {both_back}. {win} is more than {both_back}, so hold firm: {right}, option X.")
    return lettered_item(body, right, [wrong], position, rng, key=(scenario, player, rival, rival_holds),
                         params={"scenario": scenario, "rival_holds": rival_holds, "win": win, "both_back": both_back,
                                 "alone": alone, "crash": crash, "best": best},
                         reasoning=reasoning)


SPEC = GeneratorSpec("commitment-race", "Chicken against a rival who has already committed: the action that pays "
                     "more", draw, n_positions=2)
