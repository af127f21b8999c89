"""The Inverse Scaling Prize pipeline's ``numeric`` task type (its anchoring tasks): the model's
numeric estimates, sampled, and the anchoring loss of each (control, low anchor, high anchor)
triple of one question.

Per row (columns ``prompt``, ``true_answer``, ``anchor``): ``samples`` continuations of the prompt
(10 by default) at ``temperature`` 0.5, each at most 7 new tokens and cut at its first newline;
each parsed as the pipeline parses it (:func:`parse_number`); the estimate is the mean of the
valid parses. Per triple, in row order control, low, high (the control has no anchor sentence):
``loss = (high/control - 1)**2 + (low/control - 1)**2`` (:func:`anchoring_loss`), written on each
of its three rows, so the mean loss over rows is the pipeline's mean over triples. A triple whose
loss cannot be computed (an estimate with no valid sample, a control of 0) has none, and the
summary counts it. Samples draw from the stream of (seed, row, sample) alone (see
:mod:`invscale.decoding.sampling`); at temperature 0 the one greedy sample is the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from invscale.data import Dataset, Row, TaskType
from invscale.decoding import Decoder, DecodingSettings
from invscale.generation_job import Block, GenerationJob

NUMERIC_COLUMNS = ["index", "loss", "estimate", "valid_samples", "samples", "parsed", "triple"]


@dataclass(frozen=True)
class NumericSampling:
    """How a numeric row's estimate is sampled: the prize pipeline's settings by default."""

    samples: int = 10
    temperature: float = 0.5
    max_new_tokens: int = 7
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self):
        self.decoding()  # every setting checked now

    def decoding(self) -> DecodingSettings:
        """The decoding the samples are drawn with (greedy: one sample), cut at the first newline."""
        greedy = self.temperature == 0
        return DecodingSettings(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                top_k=self.top_k, samples=1 if greedy else self.samples, seed=self.seed, stops=("\n",))

    def describe(self) -> dict:
        """What the estimates depend on, for a results file's provenance."""
        return {"samples": self.samples, "temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed, "cut_at": "first newline"}


def parse_number(text: str) -> float | None:
    """A sample as the prize pipeline reads it: spaces around it, every comma and parenthesis and
    the trailing full stops dropped, then Python's ``float``; None when that fails."""
    prepared = text.strip().replace(",", "").replace(")", "").replace("(", "").rstrip(".")
    try:
        return float(prepared)
    except ValueError:
        return None


def estimate(parsed: list[float | None]) -> float | None:
    """The mean of the valid parses (None: none is valid)."""
    valid = [value for value in parsed if value is not None]
    return sum(valid) / len(valid) if valid else None


def anchoring_loss(control: float | None, low: float | None, high: float | None) -> float | None:
    """``(high/control - 1)**2 + (low/control - 1)**2``, the pipeline's loss of one triple; None when an
    estimate is missing or the control is 0."""
    if control is None or low is None or high is None or control == 0:
        return None
    return (high / control - 1) ** 2 + (low / control - 1) ** 2


class NumericJob(GenerationJob):
    """Numeric rows' samples, estimates and anchoring losses (see
    :class:`~invscale.generation_job.GenerationJob`); blocks hold whole triples."""

    units_per_block = 6  # triples per block

    def __init__(self, model, tokenizer, dataset: Dataset, sampling: NumericSampling, *, skip_indexes=frozenset(),
                 group=None, too_long: str = "error", path: str = "auto"):
        if dataset.task_type is not TaskType.numeric:
            raise ValueError(f"{dataset.name} is a {dataset.task_type.value} task, not numeric")
        self.sampling = sampling
        contexts = [tuple(tokenizer(row.prompt)["input_ids"]) for row in dataset.rows]
        lengths = [len(context) + sampling.max_new_tokens for context in contexts]
        super().__init__(model, tokenizer, dataset, contexts, lengths, skip_indexes=skip_indexes, group=group,
                         too_long=too_long, path=path, unit=lambda row: row.index // 3)

    def run_block(self, decoder: Decoder, block: Block) -> tuple[list[dict], int]:
        """Every row's samples and estimate; each whole triple's loss on its rows."""
        contexts = [context for _, context in block]
        decoder.share_preface(contexts)
        written = decoder.generate(contexts, self.sampling.decoding(), rows=[row.index for row, _ in block])
        records = {row.index: self._record(row, samples) for (row, _), samples in zip(block, written)}
        for control in range(min(records) - min(records) % 3, max(records) + 1, 3):
            triple = [records.get(control + offset) for offset in range(3)]
            loss = anchoring_loss(*(r["estimate"] if r else None for r in triple))
            for record in triple:
                if record is not None:
                    record["loss"] = loss
        tokens = sum(len(context) for context in contexts) + sum(g.generated for samples in written for g in samples)
        return [records[row.index] for row, _ in block], tokens

    def _record(self, row: Row, samples) -> dict:
        texts = [sample.text for sample in samples]
        parsed = [parse_number(text) for text in texts]
        return {"index": row.index, "loss": None, "estimate": estimate(parsed),
                "valid_samples": sum(value is not None for value in parsed), "samples": texts, "parsed": parsed,
                "triple": row.index // 3, **row.extra}
