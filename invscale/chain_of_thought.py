"""Chain-of-thought before the answer: the model writes a chain after the prompt, then every class
is scored exactly after prompt + chain + answer cue.

Per row: the context is the prompt followed by the reasoning cue (``" Let's think step by step."``
by default), tokenized as one string. The model writes after those tokens, greedily, within the
token budget, until a stop string (``"\\n\\n"`` by default) or EOS. If its text holds the answer cue
(``" So the answer is"``, any case, its leading space or not), the chain is the tokens wholly
before it, and what follows the
cue is the answer the chain names in text (``predicted_by_text``: the class it begins with, as
lm-eval's regex reading finds it). Then the answer cue and each class are appended, tokenized
together, the class's tokens scored as the prize pipeline scores a continuation (the last as many
tokens as the class has alone), after the context's and the chain's token ids themselves (never
re-tokenized text; the results keep them, ``chain_token_ids``). So the cue the model wrote and the one appended are the same tokens, and every
class log-prob is what one plain forward of prompt + chain + cue + class gives.

A budget of 0 tokens is the task as it stands (no cues, no chain): the baseline a reasoning-budget
axis compares with. Chains are greedy: the same prompt gives the same chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from invscale.data import DataError, Dataset, Row, TaskType
from invscale.decoding import Decoder, DecodingSettings
from invscale.decoding.stops import decoded, tokens_before
from invscale.generation_job import Block, GenerationJob
from invscale.scoring.metrics import CHAIN_COLUMNS, example_metrics
from invscale.scoring.scorer import score_token_sequences

__all__ = ["ANSWER_CUE", "CHAIN_COLUMNS", "REASONING_CUE", "REASONING_STOPS", "ChainJob", "ChainOfThought",
           "check_chain_dataset", "named_class"]

REASONING_CUE = " Let's think step by step."
ANSWER_CUE = " So the answer is"
REASONING_STOPS = ("\n\n",)


@dataclass(frozen=True)
class ChainOfThought:
    """How chains are written: at most ``reasoning_tokens`` tokens (0: no chain, the plain task)
    after the prompt and ``reasoning_cue``, ending at any of ``stops`` (or EOS); the classes scored
    after ``answer_cue``. ``batch_size``: chains written together (it changes speed, not chains)."""

    reasoning_tokens: int = 256
    reasoning_cue: str = REASONING_CUE
    answer_cue: str = ANSWER_CUE
    stops: tuple[str, ...] = REASONING_STOPS
    batch_size: int = 16

    def __post_init__(self):
        object.__setattr__(self, "stops", tuple(self.stops))
        if isinstance(self.reasoning_tokens, bool) or not isinstance(self.reasoning_tokens, int) \
                or self.reasoning_tokens < 0:
            raise ValueError(f"--reasoning-tokens {self.reasoning_tokens!r}: give whole numbers, 0 (no chain) or more")
        if not self.answer_cue.strip():
            raise ValueError("--answer-cue: give the text that introduces the answer (e.g. ' So the answer is')")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: give 1 or more")
        self.decoding()  # stop strings checked now

    @property
    def writes_chains(self) -> bool:
        """Whether any chain is written (a budget of 0 is the plain task)."""
        return self.reasoning_tokens > 0

    def decoding(self) -> DecodingSettings:
        """The decoding a chain is written with: greedy, within the budget, up to a stop."""
        return DecodingSettings(max_new_tokens=self.reasoning_tokens, stops=self.stops)

    def describe(self) -> dict:
        """What the chains depend on, for a results file's provenance."""
        return {"reasoning_tokens": self.reasoning_tokens, "reasoning_cue": self.reasoning_cue,
                "answer_cue": self.answer_cue, "stops": list(self.stops), "decoding": "greedy"}


def check_chain_dataset(dataset: Dataset) -> None:
    """ValueError (one line) for data a chain cannot be put before: chains are for classification
    rows (one prompt, its classes)."""
    if dataset.task_type is not TaskType.classification:
        raise ValueError(f"--cot: {dataset.name} is a {dataset.task_type.value} task; a chain of thought is written "
                         "before the answer of classification rows (a prompt and its classes)")


def named_class(text: str, classes: tuple[str, ...]) -> int | None:
    """The class ``text`` (what follows the answer cue) begins with, as a reader takes it: spaces,
    an opening parenthesis or quote and case ignored, the longest class that ends at a word's end;
    None if it names none."""
    text = text.lstrip().lstrip("(\"'*").lower()
    best = None
    for number, name in enumerate(classes):
        name = name.strip().strip("()\"'").lower()
        if name and text.startswith(name) and (len(text) == len(name) or not text[len(name)].isalnum()):
            if best is None or len(name) > len(classes[best].strip()):
                best = number
    return best


class ChainJob(GenerationJob):
    """Rows scored after chains the model writes (see :class:`~invscale.generation_job.GenerationJob`):
    per block, the chains written together, then every class scored in one run. Everything the data
    or the settings make impossible is refused before the first chain."""

    def __init__(self, model, tokenizer, dataset: Dataset, cot: ChainOfThought, *, skip_indexes=frozenset(),
                 max_tokens_per_pack: int | None = None, backend: str = "auto", kernels: str = "auto",
                 group=None, too_long: str = "error", unconditional: dict[str, float] | None = None,
                 path: str = "auto"):
        check_chain_dataset(dataset)
        self.tokenizer, self.dataset, self.cot = tokenizer, dataset, cot
        self.max_tokens_per_pack, self.backend, self.kernels = max_tokens_per_pack, backend, kernels
        self.unconditional = unconditional
        contexts = [tuple(tokenizer(row.prompt + cot.reasoning_cue)["input_ids"]) for row in dataset.rows]
        self._tails = {text: self._tail(text) for row in dataset.rows for text in row.classes}
        lengths = [len(context) + cot.reasoning_tokens + max(len(self._tails[text][0]) for text in row.classes)
                   for row, context in zip(dataset.rows, contexts)]
        super().__init__(model, tokenizer, dataset, contexts, lengths, skip_indexes=skip_indexes, group=group,
                         too_long=too_long, path=path)

    def _tail(self, text: str, cue: str | None = None) -> tuple[tuple[int, ...], int]:
        """(tokens of the answer cue and the class ``text`` together, how many of the last are the
        class's: its own token count, as the prize pipeline counts a continuation)."""
        cue = self.cot.answer_cue if cue is None else cue
        joint = tuple(self.tokenizer(cue + text, add_special_tokens=False)["input_ids"])
        own = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if own == 0:
            raise DataError(f"{self.dataset.name}: field 'classes': {text!r} has no tokens")
        return joint, min(own, len(joint))

    def run_block(self, decoder: Decoder, block: Block) -> tuple[list[dict], int]:
        """(every row's record, the tokens written and scored for the block): the chains written
        together, then every class after its row's chain in one run."""
        contexts = [context for _, context in block]
        decoder.share_preface(contexts)
        written = decoder.generate(contexts, self.cot.decoding(), rows=[row.index for row, _ in block],
                                   batch_size=self.cot.batch_size)
        chains, sequences, counts = [], [], []
        for (row, context), (generation,) in zip(block, written):
            chain = self._read_chain(row, generation)
            chains.append(chain)
            cue = self.cot.answer_cue.lstrip() if decoded(self.tokenizer, chain.tokens)[-1:].isspace() else None
            for text in row.classes:
                tail, own = self._tails[text] if cue is None else self._tail(text, cue)
                sequences.append((context + chain.tokens + tail, own))
                counts.append(own)
        logprobs, _ = score_token_sequences(self.model, sequences, self.max_tokens_per_pack, self.backend,
                                            self.kernels, path=self.path.name,
                                            mode=decoder.runner.mode if self.path.name == "cache" else None)
        records, cursor = [], 0
        for (row, _), chain in zip(block, chains):
            n = len(row.classes)
            record = example_metrics(TaskType.classification, row, logprobs[cursor:cursor + n], self.unconditional,
                                     counts[cursor:cursor + n])
            cursor += n
            named = chain.named
            record.update({"chain": chain.text, "chain_tokens": len(chain.tokens), "chain_stop": chain.stop,
                           "wrote_cue": chain.wrote_cue,
                           "predicted_by_text": None if named is None else row.classes[named],
                           "correct_by_text": None if named is None else named == row.answer_index,
                           "chain_token_ids": list(chain.tokens)})
            records.append(record)
        return records, sum(len(tokens) for tokens, _ in sequences)

    def _read_chain(self, row: Row, generation) -> "_Chain":
        """The chain to score after, from what the model wrote: cut before the answer cue if it
        wrote one, and the class its text names after the cue."""
        text = generation.text.lower()
        cue = next((cue for cue in (self.cot.answer_cue.lower(), self.cot.answer_cue.strip().lower()) if cue in text),
                   None)
        if cue is None:
            return _Chain(generation.tokens, decoded(self.tokenizer, generation.tokens), generation.stop, False, None)
        at = text.find(cue)
        kept = tuple(tokens_before(self.tokenizer, list(generation.tokens), at))
        return _Chain(kept, decoded(self.tokenizer, kept), generation.stop, True,
                      named_class(generation.text[at + len(cue):], row.classes))


@dataclass(frozen=True)
class _Chain:
    tokens: tuple[int, ...]
    text: str
    stop: str
    wrote_cue: bool
    named: int | None
