"""What every run that makes the model write before it scores shares: rows in blocks, the model's
text generated and read per block, blocks dealt out under torchrun, rows too long refused or
skipped or truncated before any work, and a resumed run computing each block as a whole run does.

A job here offers the interface of :class:`~invscale.scoring.scorer.ScoringJob` that a run reads
(``stats``, ``path``, ``too_long_rows``, ``results``), so the API runs it the same way, results
store, progress and torchrun included. Its subclasses say what is written after each row and how
a block's rows become results (:mod:`invscale.chain_of_thought`, :mod:`invscale.numeric`).
"""

from __future__ import annotations

from typing import Callable, Iterator

from invscale.data import DataError, Dataset, Row
from invscale.decoding import Decoder
from invscale.scoring.distributed import Group
from invscale.scoring.paths import choose_path
from invscale.scoring.scorer import (ScoreStats, check_too_long, limit_words, max_sequence_length, skipped_reason,
                                     too_long_message, truncated_note)

Block = list[tuple[Row, tuple[int, ...]]]  # rows and their context tokens


class GenerationJob:
    """Rows whose results need text the model writes after them. ``contexts`` are the rows' token
    ids; ``lengths`` the longest sequence each row can reach (for the model's length limit);
    ``unit`` groups rows that must share a block (a numeric triple); ``units_per_block`` units go
    together. Blocks are planned from every row, so a resumed run computes a block as an
    uninterrupted run does (rows already done in it are recomputed, not written)."""

    units_per_block = 16

    def __init__(self, model, tokenizer, dataset: Dataset, contexts: list[tuple[int, ...]], lengths: list[int], *,
                 skip_indexes=frozenset(), group: Group | None = None, too_long: str = "error", path: str = "auto",
                 unit: Callable[[Row], int] = lambda row: row.index):
        self.model, self.tokenizer, self.dataset = model, tokenizer, dataset
        self.group = group or Group()
        self.too_long = check_too_long(too_long)
        self.streamed = self.stream_times = None
        rows = dataset.rows
        self._pending = {row.index for row in rows if row.index not in skip_indexes}
        self.path = choose_path(model.config, path, max(lengths, default=1))
        limit = max_sequence_length(model.config, path)
        long = [(row, length) for row, length in zip(rows, lengths) if limit is not None and length > limit]
        if long and self.too_long == "error":
            raise DataError(too_long_message(dataset.name, [(row.index, length) for row, length in long],
                                             limit_words(model.config, path)))
        skipped = {row.index: skipped_reason(length, model.config, path) for row, length in long
                   if self.too_long == "skip"}
        self._skipped = {index: reason for index, reason in skipped.items() if index in self._pending}
        self.truncated = {row.index: length - limit for row, length in long if self.too_long == "truncate-left"}
        units: dict[int, Block] = {}
        for row, context in zip(rows, contexts):
            if row.index not in skipped:
                units.setdefault(unit(row), []).append((row, context[self.truncated.get(row.index, 0):]))
        ordered = list(units.values())
        blocks = [[pair for grouped in ordered[start:start + self.units_per_block] for pair in grouped]
                  for start in range(0, len(ordered), self.units_per_block)]
        self._blocks = [block for block in blocks if any(row.index in self._pending for row, _ in block)]
        self.stats = ScoreStats(items=len(self._pending))

    @property
    def too_long_rows(self) -> int:
        """Rows still to score that are too long for the model (skipped or truncated)."""
        return len(self._skipped) + len(self._pending & self.truncated.keys())

    def results(self, on_pack: Callable[[int, int], None] | None = None) -> Iterator[dict]:
        """One result per row still to score (rows too long for the model skipped first, when so
        asked), block by block; ``on_pack(rows, tokens)`` after each block."""
        for index, reason in self._skipped.items():
            yield {"index": index, "skipped": reason}
        if self._skipped and on_pack is not None:
            on_pack(len(self._skipped), 0)
        if not self._blocks:
            return
        with Decoder(self.model, self.tokenizer) as decoder:
            shared = self.group.shared(self._blocks, lambda block: self._finish(decoder, block),
                                       lambda block: sum(len(context) for _, context in block))
            for _, (records, tokens) in shared:
                yield from records
                if on_pack is not None:
                    on_pack(len(records), tokens)

    def _finish(self, decoder: Decoder, block: Block) -> tuple[list[dict], int]:
        """(the records of the block's rows still to score, the tokens computed for the block)."""
        records, tokens = self.run_block(decoder, block)
        for record in records:
            if record["index"] in self.truncated:
                record["truncated"] = truncated_note(self.truncated[record["index"]])
        return [record for record in records if record["index"] in self._pending], tokens

    def run_block(self, decoder: Decoder, block: Block) -> tuple[list[dict], int]:
        """(a record for every row of ``block``, the tokens computed): what a subclass writes."""
        raise NotImplementedError
