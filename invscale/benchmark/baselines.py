"""The plain HF ways of scoring options, as strong as they come without invscale.

Both take the scorer's own tokenization (:func:`invscale.scoring.tokenize.tokenize_rows`: joint
context+continuation, the last ``n_target`` tokens scored) and return one summed log-prob per
(row, continuation), in dataset order.

- :func:`per_option_logprobs` (baseline A, the prize pipeline / lm-eval way): one sequence per
  option, length-sorted, batched to a token budget, right-padded, full-vocabulary log_softmax in
  fp32, gather.
- :func:`kv_reuse_logprobs` (baseline B): per row, the options' common prefix runs once with a KV
  cache, which is repeated for every option; the options' remaining tokens run as one batch.
"""

from __future__ import annotations

import inspect

import torch

from invscale.data import Dataset
from invscale.scoring.tokenize import ScoredSequence, tokenize_rows


def _sequences(model, tokenizer, dataset: Dataset) -> list[list[ScoredSequence]]:
    return tokenize_rows(tokenizer, dataset.rows, dataset.task_type, dataset.name,
                         getattr(model.config, "max_position_embeddings", None))


def _padded(rows: list[tuple[int, ...]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask, [len(rows), longest]."""
    longest = max(map(len, rows))
    ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, tokens in enumerate(rows):
        ids[i, :len(tokens)] = torch.tensor(tokens)
        mask[i, :len(tokens)] = 1
    return ids, mask


def _target_logprobs(logits: torch.Tensor, tokens: tuple[int, ...], first_position: int, n_target: int) -> torch.Tensor:
    """Sum of log p(tokens[j]) over the last ``n_target`` j, from ``logits`` whose row 0 is the
    prediction made at sequence position ``first_position``."""
    start = len(tokens) - n_target
    rows = torch.arange(start - 1, len(tokens) - 1, device=logits.device) - first_position
    targets = torch.tensor(tokens[start:], device=logits.device)
    return torch.log_softmax(logits[rows].float(), dim=-1).gather(1, targets[:, None]).sum()


@torch.no_grad()
def per_option_logprobs(model, tokenizer, dataset: Dataset, token_budget: int = 8192) -> list[list[float]]:
    """Baseline A: every option sequence through a full forward pass, batched by length."""
    sequences = _sequences(model, tokenizer, dataset)
    flat = [(r, s, seq) for r, row in enumerate(sequences) for s, seq in enumerate(row)]
    flat.sort(key=lambda entry: -len(entry[2].tokens))
    out = [[0.0] * len(row) for row in sequences]
    device = model.device
    start = 0
    while start < len(flat):
        batch = flat[start:start + max(1, token_budget // len(flat[start][2].tokens))]
        start += len(batch)
        ids, mask = _padded([seq.tokens for _, _, seq in batch], pad=1)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        sums = torch.stack([_target_logprobs(logits[b], seq.tokens, 0, seq.n_target)
                            for b, (_, _, seq) in enumerate(batch)]).tolist()
        for (r, s, _), value in zip(batch, sums):
            out[r][s] = value
    return out


def _common_prefix(sequences: list[ScoredSequence]) -> int:
    """Tokens every sequence of a row shares, leaving each at least its scored tokens after it."""
    limit = min(len(seq.tokens) - seq.n_target for seq in sequences)
    first = sequences[0].tokens
    length = 0
    while length < limit and all(seq.tokens[length] == first[length] for seq in sequences):
        length += 1
    return length


def _cache_name(model) -> str:
    """What the model's forward calls its key/value cache (argument and output): ``cache`` from
    transformers 5.24 on, ``past_key_values`` before (kept as a deprecated alias until 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def kv_reuse_logprobs(model, tokenizer, dataset: Dataset) -> list[list[float]]:
    """Baseline B: per row, the shared prefix once (cached), then all its options as one batch."""
    sequences = _sequences(model, tokenizer, dataset)
    device = model.device
    cache_name = _cache_name(model)
    out = []
    for row in sequences:
        shared = _common_prefix(row)
        prefix = torch.tensor([row[0].tokens[:shared]], device=device)
        cached = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        cache = cached[cache_name]
        cache.batch_repeat_interleave(len(row))
        ids, mask = _padded([seq.tokens[shared:] for seq in row], pad=1)
        full_mask = torch.cat([torch.ones(len(row), shared, dtype=torch.long), mask], dim=1).to(device)
        positions = torch.arange(shared, shared + ids.shape[1], device=device).expand(len(row), -1)
        logits = model(input_ids=ids.to(device), attention_mask=full_mask, position_ids=positions,
                       use_cache=True, **{cache_name: cache}).logits
        # prediction rows: the prefix's last position, then every option position
        sums = [_target_logprobs(torch.cat([cached.logits[0, -1:], logits[i]]), seq.tokens, shared - 1, seq.n_target)
                for i, seq in enumerate(row)]
        out.append(torch.stack(sums).tolist())
    return out
