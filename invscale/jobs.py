"""Which job computes a dataset's results: the model scoring the rows (a
:class:`~invscale.scoring.scorer.ScoringJob`), or writing first: a chain of thought before the
classes (:class:`~invscale.chain_of_thought.ChainJob`), sampled estimates for numeric rows
(:class:`~invscale.numeric.NumericJob`). One choice for ``score``, ``evaluate`` and ``sweep``, with
the results' provenance of what was written."""

from __future__ import annotations

from dataclasses import dataclass

from invscale.chain_of_thought import ChainJob, ChainOfThought, check_chain_dataset
from invscale.data import Dataset, TaskType
from invscale.numeric import NumericJob, NumericSampling
from invscale.scoring.scorer import ScoringJob


@dataclass(frozen=True)
class Writing:
    """What the model writes before results are read: a chain of thought (``cot``, None for none;
    a budget of 0 is none) and how numeric rows are sampled."""

    cot: ChainOfThought | None = None
    sampling: NumericSampling = NumericSampling()

    def chains(self) -> dict | None:
        """The chain settings as results record them (None: no chains)."""
        return self.cot.describe() if self.cot is not None and self.cot.writes_chains else None

    def sampling_of(self, dataset: Dataset) -> dict | None:
        """How ``dataset``'s estimates are sampled (numeric rows; None for any other), as results record it."""
        return self.sampling.describe() if dataset.task_type is TaskType.numeric else None

    def check(self, dataset: Dataset) -> None:
        """ValueError (one line) for settings that cannot apply to ``dataset``, before any work."""
        if self.chains() is not None:
            check_chain_dataset(dataset)
        if dataset.task_type is not TaskType.numeric and self.sampling != NumericSampling():
            raise ValueError(f"sampling settings (--samples, --temperature, ...) are for numeric rows; {dataset.name} "
                             f"is a {dataset.task_type.value} task")


def make_job(model, tokenizer, dataset: Dataset, writing: Writing, *, skip_indexes, streamed=None,
             max_tokens_per_pack: int | None = None, backend: str = "auto", kernels: str = "auto",
             memory_budget: int | None = None, group=None, too_long: str = "error",
             unconditional: dict[str, float] | None = None, path: str = "auto"):
    """The job that computes ``dataset``'s results still to do (see the module's docstring); the
    model writes only when loaded whole (one line refusing streamed layers otherwise)."""
    writes = ("--cot" if writing.chains() is not None
              else "numeric rows" if dataset.task_type is TaskType.numeric else None)
    if writes is None:
        return ScoringJob(model, tokenizer, dataset, max_tokens_per_pack=max_tokens_per_pack, backend=backend,
                          skip_indexes=skip_indexes, kernels=kernels, streamed=streamed,
                          memory_budget=memory_budget, group=group, too_long=too_long,
                          unconditional=unconditional, path=path)
    if streamed is not None:
        raise ValueError(f"{writes}: the model writes with its own forward and cache, which does not stream layers: "
                         "load it whole (--offload none)")
    if dataset.task_type is TaskType.numeric:
        return NumericJob(model, tokenizer, dataset, writing.sampling, skip_indexes=skip_indexes, group=group,
                          too_long=too_long, path=path)
    return ChainJob(model, tokenizer, dataset, writing.cot, skip_indexes=skip_indexes,
                    max_tokens_per_pack=max_tokens_per_pack, backend=backend, kernels=kernels, group=group,
                    too_long=too_long, unconditional=unconditional, path=path)
