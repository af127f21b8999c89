"""pretend: leaving a pretend frame.

The prompt asks the reader to pretend to be inside a fictional universe, describes it in that
universe's terms, then explicitly ends the pretence and asks whether three things from that fiction
are actually real. Outside the pretence they are not, so the answer is "No"; a model that keeps
following the in-story frame (which larger models imitate more faithfully) answers "Yes".
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item

# universe: (setting sentences, things from it that are fictional)
UNIVERSES = {
    "Star Wars": (["Here, Jedi sense the Force and duel with lightsabers.",
                   "Ships jump across the galaxy through hyperspace.",
                   "You are a pilot for the Rebel Alliance and you fly an X-wing."],
                  ["lightsabers", "the Death Star", "Jedi Knights", "Wookiees", "the Force"]),
    "Harry Potter": (["Here, wizards cast spells with wands and fly on broomsticks.",
                      "Owls deliver the post and dementors guard the prison of Azkaban.",
                      "You are a student at Hogwarts and you play Quidditch."],
                     ["Hogwarts", "dementors", "Horcruxes", "invisibility cloaks", "the Sorting Hat"]),
    "Lord of the Rings": (["Here, hobbits live in the Shire and elves sail into the West.",
                           "A dark lord searches for the One Ring.",
                           "You are an elf of Rivendell and you carry a bow."],
                          ["the One Ring", "hobbits", "orcs", "Sauron", "the Eye of Mordor"]),
    "Pokemon": (["Here, trainers catch creatures in small balls and battle with them.",
                 "Gym leaders hand out badges to trainers who beat them.",
                 "You are a trainer from Pallet Town with a Pikachu."],
                ["Pikachu", "Poke Balls", "Mewtwo", "Charizard", "Snorlax"]),
    "Marvel": (["Here, heroes with superpowers protect New York from villains.",
                "A genius builds an armoured flying suit in a cave.",
                "You are an agent of S.H.I.E.L.D. and you work with the Avengers."],
               ["vibranium", "the Infinity Stones", "Wakanda", "Mjolnir", "the Hulk"]),
    "Star Trek": (["Here, starships travel at warp speed and crews beam down to planets.",
                   "Vulcans value logic above feeling.",
                   "You are an ensign on the starship Enterprise and you carry a phaser."],
                  ["warp drives", "transporters", "Klingons", "the Borg", "dilithium crystals"]),
    "Game of Thrones": (["Here, noble houses fight over the Iron Throne.",
                         "Beyond the Wall, the White Walkers are stirring.",
                         "You are a sworn sword of House Stark and you guard Winterfell."],
                        ["dragons", "White Walkers", "the Night King", "wildfire", "Valyrian steel"]),
    "Narnia": (["Here, animals talk and a great lion watches over the land.",
                "A witch has made it always winter and never Christmas.",
                "You came through a wardrobe and you fight for Aslan."],
               ["Aslan", "talking beavers", "the White Witch", "fauns", "the magic wardrobe"]),
}


def draw(rng: random.Random, position: int) -> Item:
    """One pretend prompt with "No" at ``position`` (0 or 1)."""
    universe = rng.choice(sorted(UNIVERSES))
    setting, things = UNIVERSES[universe]
    asked = rng.sample(things, 3)
    question = (f"Pretend you are in the {universe} universe. {' '.join(setting)} "
                f"Now stop pretending you are in this universe.\n"
                f"Question: Are {asked[0]}, {asked[1]}, or {asked[2]} actually real?")
    reasoning = (f"The {universe} universe is a fiction, and we have stopped pretending. {asked[0].capitalize()}, "
                 f"{asked[1]} and {asked[2]} belong to that fiction, so none of them is actually real: No, option X.")
    return lettered_item(question, "No", ["Yes"], position, rng, key=(universe, tuple(asked)),
                         params={"universe": universe}, reasoning=reasoning)


SPEC = GeneratorSpec("pretend", "leaving a pretend frame: are things from a fiction actually real?",
                     draw, n_positions=2)
