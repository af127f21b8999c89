"""Seeded task generators that emit prize-format rows. They never import the scorer.

Each generator keeps its dataset-wide preface (instruction and worked examples) byte-identical on
every row, so the scorer computes it once. Same name, n, seed and shots give the same rows.
"""

from __future__ import annotations

from typing import Callable

from invscale.data import Dataset, validate_records
from invscale.generators import (anchoring, code_quality, commitment_race, deception_incentive, decoy,
                                 deliberate_fail, expert, false_premise, gambling, instruction_chain, persona_hint,
                                 persona_reasoning, pretend, random_sequence, self_fulfilling_prophecy, stubbornness,
                                 technical_meaning, triviamod, ultimatum, unrelated_documents)
from invscale.generators.base import Generated, GeneratorSpec, generate_records

REGISTRY: dict[str, GeneratorSpec] = {spec.name: spec for spec in (
    triviamod.SPEC, gambling.SPEC, decoy.SPEC, expert.SPEC, pretend.SPEC, instruction_chain.SPEC,
    persona_hint.SPEC, false_premise.SPEC, deliberate_fail.SPEC, ultimatum.SPEC, random_sequence.SPEC,
    stubbornness.SPEC, unrelated_documents.SPEC, self_fulfilling_prophecy.SPEC, deception_incentive.SPEC,
    persona_reasoning.SPEC, commitment_race.SPEC, technical_meaning.SPEC, code_quality.SPEC, anchoring.CHOICE_SPEC,
    GeneratorSpec("anchoring", "anchoring: an irrelevant anchor sentence pulls a sampled numeric estimate (numeric "
                  "task type)", None, 0, build=anchoring.generate_anchoring, rows_per_item=3),
)}


def generate(task: str, n: int, seed: int = 0, shots: int | None = None,
             on_drawn: Callable[[int], None] | None = None,
             cues: tuple[str, str] | None = None) -> tuple[Dataset, Generated]:
    """Rows of ``task`` as a validated :class:`Dataset`, with the raw generator output;
    ``on_drawn(count)`` hears of the rows as they are drawn (for progress); with ``cues`` (a
    reasoning cue and an answer cue) the worked examples show their written chains of thought."""
    if task not in REGISTRY:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[task]
    if spec.build is not None:
        if cues is not None:
            raise ValueError(f"{task}: its rows are not multiple-choice; chains of thought are written before classes")
        generated = spec.build(n, seed, shots, on_drawn)
    else:
        generated = generate_records(spec, n, seed, shots, on_drawn, cues)
    columns = list(dict.fromkeys(key for record in generated.records for key in record))
    return validate_records(f"{task}(seed={seed})", generated.records, columns), generated


def variant_name(task: str, shots: int | None = None, seed: int | None = None, reasoning_tokens: int | None = None) -> str:
    """The name of one generated variant of ``task``: ``-Kshot`` when a shot count is given,
    ``-seedS`` when a seed is given (callers give it when there are several), ``-cotN`` for a chain
    of thought of at most N tokens."""
    return (task + (f"-{shots}shot" if shots is not None else "") + (f"-seed{seed}" if seed is not None else "")
            + (f"-cot{reasoning_tokens}" if reasoning_tokens is not None else ""))
