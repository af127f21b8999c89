"""The next token of each sample: the argmax, or a draw from the sample's own random stream.

A sample's stream is seeded by (run seed, row, sample number) alone, and each step takes one
uniform number from it and reads the token off the cumulative probabilities (in float64, tokens
in descending probability order). So a sample's tokens depend on neither batch layout, pack size
nor torchrun rank: a batch only changes which rows are computed together, and the last bits of
their probabilities, which move a draw only when it falls within rounding of a boundary.
"""

from __future__ import annotations

import numpy as np
import torch

from invscale.decoding.settings import DecodingSettings


def sample_stream(seed: int, row: int, sample: int) -> torch.Generator:
    """The random stream of sample ``sample`` of row ``row`` in a run seeded ``seed``."""
    state = np.random.SeedSequence([seed, row, sample]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def filtered_probabilities(logits: torch.Tensor, settings: DecodingSettings) -> torch.Tensor:
    """Next-token probabilities [B, V] (float64) after temperature, top-k and top-p, in that order,
    as transformers' warpers apply them (top-p keeps the most probable tokens whose mass reaches
    ``top_p``, at least one)."""
    scaled = logits.double() / settings.temperature
    if settings.top_k and settings.top_k < scaled.shape[-1]:
        kth = scaled.topk(settings.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probabilities = scaled.softmax(-1)
    if settings.top_p < 1:
        ordered, order = probabilities.sort(dim=-1, descending=True, stable=True)
        before = ordered.cumsum(-1) - ordered  # mass of the more probable tokens
        dropped = torch.zeros_like(ordered, dtype=torch.bool).scatter(-1, order, before >= settings.top_p)
        probabilities = probabilities.masked_fill(dropped, 0.0)
        probabilities = probabilities / probabilities.sum(-1, keepdim=True)
    return probabilities


def next_tokens(logits: torch.Tensor, settings: DecodingSettings, streams: list[torch.Generator]) -> list[int]:
    """Each row's next token from its logits [B, V]: the argmax when greedy, else a draw from the
    row's stream."""
    if settings.greedy:
        return logits.argmax(-1).tolist()
    probabilities = filtered_probabilities(logits.cpu(), settings)
    ordered, order = probabilities.sort(dim=-1, descending=True, stable=True)
    cumulative = ordered.cumsum(-1)
    chosen = []
    for row, stream in enumerate(streams):
        draw = torch.rand((), generator=stream, dtype=torch.float64) * cumulative[row, -1]
        position = min(int(torch.searchsorted(cumulative[row], draw, right=True)), ordered.shape[-1] - 1)
        chosen.append(int(order[row, position]))
    return chosen
