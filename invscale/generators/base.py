"""What every generator shares: seeded randomness, balanced answer positions, unique items,
lettered options, a dataset-wide preface, and prize-format records."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

LETTERS = "ABCDEFGH"


@dataclass
class Item:
    """One example: ``body`` is the prompt after the preface and before the final ``Answer:``.

    ``key`` identifies the underlying question (two items with the same key are duplicates even if
    their options are ordered differently); a test item never shares its ``topic`` with a worked
    example (so the preface does not give answers away); ``params`` become metadata columns.
    ``reasoning``: a written chain of thought that reaches the labelled answer, shown in the worked
    examples of a chain-of-thought preface.
    """

    body: str
    classes: list[str]
    answer_index: int
    key: tuple
    params: dict = field(default_factory=dict)
    topic: str | None = None
    reasoning: str = ""


@dataclass(frozen=True)
class GeneratorSpec:
    """A registered task generator.

    ``draw(rng, position)`` returns an item whose answer is at ``position`` (0..n_positions-1);
    ``instruction`` starts the preface, followed by ``shots`` worked examples drawn once per dataset.
    ``build`` (when set) writes the rows itself, for a task that is not multiple-choice.
    """

    name: str
    description: str
    draw: Callable[[random.Random, int], Item]
    n_positions: int
    instruction: str = ""
    default_shots: int = 0
    # a generator whose rows are not multiple-choice items writes them itself: (n, seed, shots, on_drawn)
    build: Callable | None = None
    rows_per_item: int = 1  # rows come in groups of this many (a numeric triple: 3); n must be a multiple


def lettered_item(question: str, correct: str, wrong: list[str], position: int, rng: random.Random,
                  key: tuple, params: dict, topic: str | None = None, reasoning: str = "") -> Item:
    """A multiple-choice item listing options as ``A. ...`` with the correct one at ``position``
    (``reasoning``: its written chain of thought; "option X" in it names the correct letter)."""
    others = list(wrong)
    rng.shuffle(others)
    options = others[:position] + [correct] + others[position:]
    listing = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))
    return Item(f"{question}\n{listing}", [f" {LETTERS[i]}" for i in range(len(options))], position, key, params,
                topic, reasoning.replace("option X", f"option {LETTERS[position]}"))


def with_article(number: int) -> str:
    """``a 7`` or ``an 8`` / ``an 11`` / ``an 18`` / ``an 80``: the article as the number is spoken."""
    spoken = str(number)
    return f"{'an' if spoken.startswith('8') or spoken in ('11', '18') else 'a'} {number}"


def answer_positions(n: int, n_positions: int, rng: random.Random) -> list[int]:
    """Answer positions used as evenly as ``n`` allows, in shuffled order."""
    positions = [i % n_positions for i in range(n)]
    rng.shuffle(positions)
    return positions


@dataclass
class Generated:
    """A generator's output: prize-format records plus what the user should be told."""

    records: list[dict]
    preface: str
    notes: list[str]


DRAWN_REPORT_EVERY = 10_000  # rows between two calls of on_drawn


def generate_records(spec: GeneratorSpec, n: int, seed: int, shots: int | None = None,
                     on_drawn: Callable[[int], None] | None = None, cues: tuple[str, str] | None = None) -> Generated:
    """Draw ``n`` distinct items (repeating only when the space runs out, with a note saying so)
    after a preface of worked examples that is byte-identical on every row; ``on_drawn(count)`` is
    told of every :data:`DRAWN_REPORT_EVERY` rows drawn, and of the rest at the end. With ``cues``
    (a reasoning cue and an answer cue) each worked example's answer is its written chain of
    thought: "Answer:" + reasoning cue + chain + answer cue + the answer, the items drawn the same."""
    if n < 1:
        raise ValueError("--n must be at least 1")
    rng = random.Random(seed)
    shots = spec.default_shots if shots is None else shots
    seen: set = set()
    examples = [_draw_new(spec, rng, p, seen) for p in answer_positions(shots, spec.n_positions, rng)]
    if any(example is None for example in examples):
        raise ValueError(f"{spec.name}: too few distinct items for {shots} worked examples")
    seen |= {("topic", ex.topic) for ex in examples if ex.topic is not None}
    preface = spec.instruction + "".join(
        f"{ex.body}\nAnswer:{_worked_answer(ex, cues)}\n\n" for ex in examples
    )
    items: list[Item] = []
    for position in answer_positions(n, spec.n_positions, rng):
        item = _draw_new(spec, rng, position, seen)
        if item is None:
            break
        items.append(item)
        if on_drawn is not None and len(items) % DRAWN_REPORT_EVERY == 0:
            on_drawn(DRAWN_REPORT_EVERY)
    if on_drawn is not None:
        on_drawn(n - len(items) // DRAWN_REPORT_EVERY * DRAWN_REPORT_EVERY)
    notes = []
    if len(items) < n:
        distinct = len(items)
        if not distinct:
            raise ValueError(f"{spec.name}: no items left after the worked examples")
        notes.append(f"{spec.name}: found only {distinct} distinct items for these settings; "
                     f"the other {n - distinct} rows repeat earlier ones")
        items += [items[i % distinct] for i in range(n - distinct)]
    records = [
        {"prompt": preface + item.body + "\nAnswer:", "classes": item.classes, "answer_index": item.answer_index,
         "task": spec.name, "seed": seed, "shots": shots, **item.params}
        for item in items
    ]
    return Generated(records, preface, notes)


def _worked_answer(example: Item, cues: tuple[str, str] | None) -> str:
    """A worked example's answer: the class, or with ``cues`` its chain of thought, then the class."""
    answer = example.classes[example.answer_index]
    if cues is None:
        return answer
    reasoning_cue, answer_cue = cues
    return f"{reasoning_cue} {example.reasoning}{answer_cue}{answer}."


def _draw_new(spec: GeneratorSpec, rng: random.Random, position: int, seen: set, attempts: int = 200) -> Item | None:
    for _ in range(attempts):
        item = spec.draw(rng, position)
        if item.key not in seen and ("topic", item.topic) not in seen:
            seen.add(item.key)
            return item
    return None
