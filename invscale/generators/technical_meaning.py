"""technical-meaning: an everyday sentence uses a word in its everyday sense, not its technical
one (Prize ideas list: common vs technical meanings of words).

Each item is an everyday sentence about a named person that contains a word with a technical
sense in some field ("significant" in statistics, "positive" in medicine, "power" in physics,
"organic" in chemistry). The options read the word in its everyday sense or in its technical
sense. The sentence fixes the everyday one (a pay rise, a feeling after an interview, a
referee's decisions: nothing is measured or tested), so the everyday sense is labelled. A model
that has read much technical text, where the word carries its technical sense, may prefer that
reading.
"""

from __future__ import annotations

import random

from invscale.generators.base import GeneratorSpec, Item, lettered_item
from invscale.generators.people import draw_person

# word: (everyday sense, technical sense, the technical field, everyday sentences with {name})
WORDS = {
    "significant": ("large or important", "unlikely to have arisen by chance alone", "statistics",
                    ("{name} got a significant pay rise this year and finally bought a new sofa.",
                     "There was a significant amount of snow on the road, so {name} stayed at home.")),
    "normal": ("usual or ordinary", "following a bell-shaped, Gaussian distribution", "statistics",
               ("It was a normal Tuesday for {name}: work, dinner, and an early night.",
                "{name} said the noise from the boiler is normal and nothing to worry about.")),
    "positive": ("hopeful and confident", "showing that what was tested for is present", "medicine",
                 ("{name} felt positive after the interview and smiled all the way home.",
                  "Despite the rain, {name} stayed positive about the camping trip.")),
    "mode": ("a way or setting of doing something", "the value that occurs most often in a set of data",
             "statistics", ("{name} switched the phone into silent mode before the film started.",
                            "On holiday {name} goes into relaxation mode and stops checking email.")),
    "theory": ("a guess or hunch", "a well-tested explanation of many observations", "science",
               ("{name} has a theory that the neighbour's cat steals socks from the washing line.",
                "{name}'s theory is that the bus is always late on Mondays because of the market.")),
    "error": ("a mistake", "the difference between a measured value and the true value", "measurement",
              ("{name} made an error on the form and had to fill it in again.",
               "It was an error to leave the window open, {name} realised when the rain came in.")),
    "organic": ("grown without artificial chemicals", "made of carbon compounds", "chemistry",
                ("{name} buys organic vegetables at the Saturday market.",
                 "The café where {name} works serves only organic coffee.")),
    "critical": ("quick to find fault", "at the point where a system changes state", "physics",
                 ("{name}'s aunt is very critical of the way {name} dresses.",
                  "The reviewer was critical of {name}'s new novel, calling it slow.")),
    "random": ("odd or unexpected", "chosen by chance with every outcome equally likely", "probability",
               ("A random man in a chicken costume waved at {name} on the way to work.",
                "{name} sent a random message about penguins to the family chat.")),
    "average": ("ordinary and unremarkable", "the sum of the values divided by how many there are", "mathematics",
                ("The film was pretty average, {name} said: not bad, not great.",
                 "{name} thought the hotel breakfast was only average for the price.")),
    "bias": ("an unfair preference for one side", "the gap between an estimate's expected value and the true value",
             "statistics", ("{name} thinks the referee showed bias towards the home team.",
                            "{name}'s grandmother has a bias for anything her grandchildren bake.")),
    "power": ("control or influence over others", "the rate at which work is done, in watts", "physics",
              ("The new manager enjoys having power over {name}'s team.",
               "{name} believes the village council has too much power over local shops.")),
    "energy": ("liveliness and the strength to do things", "the capacity to do work, measured in joules", "physics",
               ("After a good night's sleep {name} was full of energy.",
                "{name} admired the energy of the children running around the park.")),
    "stress": ("worry and pressure", "force per unit area inside a material", "engineering",
               ("Exams always cause {name} a lot of stress.",
                "{name} went for a long walk to forget the stress of the week.")),
}


def draw(rng: random.Random, position: int) -> Item:
    """One everyday sentence, the everyday sense at option ``position`` (0 or 1)."""
    word = rng.choice(sorted(WORDS))
    everyday, technical, field, sentences = WORDS[word]
    context = rng.randrange(len(sentences))
    name, _ = draw_person(rng)
    sentence = sentences[context].format(name=name)
    body = f"Sentence: {sentence}\nQuestion: In this sentence, what does \"{word}\" mean?"
    reasoning = (f"The sentence is everyday talk about {name}; nothing in it is measured or tested as in "
                 f"{field}. So \"{word}\" has its everyday sense, {everyday}, option X.")
    return lettered_item(body, everyday.capitalize(), [technical.capitalize()], position, rng,
                         key=(word, context, name), params={"word": word, "field": field, "context": context},
                         reasoning=reasoning)


SPEC = GeneratorSpec("technical-meaning", "an everyday sentence with a word that also has a technical sense",
                     draw, n_positions=2)
