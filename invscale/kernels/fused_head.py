"""Log-probabilities of answer tokens from final hidden states, without full [T, V] logits.

For hidden states ``h`` [T, d] at the positions that predict answer tokens, the LM head ``W``
[V, d] (+ bias) and targets ``t`` [T]: ``logprob[i] = z[i, t[i]] − logsumexp_v(z[i, v])`` with the
logits ``z = h·Wᵀ``, transformed as the model's own head transforms them (:class:`LogitTransform`:
a scale, as Cohere and Granite apply, then a soft cap, as Gemma2 applies) before the logsumexp.

- :func:`answer_logprobs_torch`, the plain reference: logits in row chunks (the model's dtype,
  as ``lm_head`` gives them; on CPU through :func:`invscale.kernels.cpu_linear.linear`, and on a
  CPU without half-precision products computed in float32 from the widened weight and rounded to
  the model's dtype), reduced in fp32.
- :func:`answer_logprobs_triton`: one Triton kernel computes tiles of ``h·Wᵀ`` with tensor-core
  dots (fp32 accumulation; exact fp32 dots for fp32 inputs) and folds each tile straight into a
  running max, a running sum of exponentials and the target's logit, per row. The vocabulary is
  split across programs for parallelism; the per-split partials ([splits, T], O(T) memory) are
  combined in torch. No [T, V] tensor is ever written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from invscale.kernels import cpu_linear
from invscale.kernels.launch import chosen_meta, interpreting, tuned

MAX_SPLITS = 64


@dataclass(frozen=True)
class LogitTransform:
    """What a model's head does to ``h·Wᵀ (+ bias)`` before the softmax: multiply by ``scale``, then
    ``softcap * tanh(logits / softcap)`` when ``softcap`` is set."""

    scale: float = 1.0
    softcap: float | None = None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The transformed logits (plain torch; the reference for the kernel's)."""
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


PLAIN = LogitTransform()


def answer_logprobs_torch(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          bias: torch.Tensor | None = None, transform: LogitTransform = PLAIN,
                          rows_per_chunk: int = 256, with_greedy: bool = False,
                          scratch: cpu_linear.Scratch | None = None):
    """log p(targets[t] | hidden[t]) for the LM head ``weight`` [V, d] (+ ``bias`` [V]), its logits
    transformed by ``transform``.

    hidden: [T, d] in the model's dtype; targets: [T] int64. Returns [T] float32, and with
    ``with_greedy`` also [T] bool: whether the target is the argmax (the first, on ties). Where the
    weight is widened to float32 (half precision on a CPU without its products), it is widened into
    ``scratch`` when given: a fresh copy of SmolLM2's head cost 40–70 ms a call more on Zen 3.
    """
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    greedy = torch.empty(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    widening = (hidden.device.type == "cpu" and hidden.shape[0] >= cpu_linear.MIN_ROWS
                and cpu_linear.widens(hidden.dtype))
    if widening:  # once for every chunk
        weight = weight.float() if scratch is None else scratch.widen(weight)
        bias = None if bias is None else bias.float()
    for start in range(0, hidden.shape[0], rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        # On CPU through oneDNN: for a head's tens of thousands of outputs its float32 product (a
        # widened head's too) ran 1.4-1.9x faster than F.linear's (MKL) at 32 to 256 rows on Zen 3.
        logits = (cpu_linear.linear(hidden[rows].float(), weight, bias).to(hidden.dtype) if widening
                  else cpu_linear.linear(hidden[rows], weight, bias))
        logits = transform.apply(logits.float())  # [rows, V]
        picked = logits.gather(1, targets[rows, None]).squeeze(1)
        out[rows] = picked - torch.logsumexp(logits, dim=1)
        if with_greedy:
            greedy[rows] = logits.argmax(dim=1) == targets[rows]
    return (out, greedy) if with_greedy else out


_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_V": bv, "BLOCK_D": bd}, num_warps=w, num_stages=s)
    for bt, bv, bd, w, s in [
        (128, 128, 64, 8, 3), (128, 128, 64, 4, 4), (64, 128, 64, 4, 4), (128, 256, 64, 8, 3),
        (64, 256, 64, 8, 3), (128, 64, 64, 4, 4), (64, 64, 128, 4, 3), (128, 128, 32, 4, 4),
    ]
]


@tuned(_CONFIGS, key=["D", "V", "T_BUCKET"], fixed={"BLOCK_T": 32, "BLOCK_V": 128, "BLOCK_D": 64})
@triton.jit
def _partials_kernel(h_ptr, w_ptr, bias_ptr, target_ptr, max_ptr, sum_ptr, picked_ptr, argmax_ptr,
                     T, V, D, T_BUCKET, stride_ht, stride_hd, stride_wv, stride_wd, scale, softcap,
                     HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                     TRACK_ARGMAX: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
                     BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    """Program (row block, split): running max / sum of exp / target logit (and, with
    TRACK_ARGMAX, the first column holding the max) over its vocab tiles."""
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    split, n_splits = tl.program_id(1), tl.num_programs(1)
    row_ok = rows < T
    targets = tl.load(target_ptr + rows, mask=row_ok, other=-1)
    n_tiles = tl.cdiv(V, BLOCK_V)
    tiles_per_split = tl.cdiv(n_tiles, n_splits)
    first = split * tiles_per_split
    last = tl.minimum(first + tiles_per_split, n_tiles)
    running_max = tl.full([BLOCK_T], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_T], tl.float32)
    picked = tl.zeros([BLOCK_T], tl.float32)
    best = tl.zeros([BLOCK_T], tl.int32)
    dims = tl.arange(0, BLOCK_D)
    for tile in range(first, last):
        cols = tile * BLOCK_V + tl.arange(0, BLOCK_V)
        col_ok = cols < V
        logits = tl.zeros([BLOCK_T, BLOCK_V], tl.float32)
        for start in range(0, D, BLOCK_D):
            dim_ok = start + dims < D
            h = tl.load(h_ptr + rows[:, None] * stride_ht + (start + dims)[None, :] * stride_hd,
                        mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
            w = tl.load(w_ptr + cols[:, None] * stride_wv + (start + dims)[None, :] * stride_wd,
                        mask=col_ok[:, None] & dim_ok[None, :], other=0.0)
            if UPCAST:
                h, w = h.to(tl.float32), w.to(tl.float32)
            if IEEE:
                logits = tl.dot(h, tl.trans(w), logits, input_precision="ieee")
            else:
                logits = tl.dot(h, tl.trans(w), logits)
        if HAS_BIAS:
            logits += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_SCALE:
            logits = logits * scale
        if HAS_SOFTCAP:  # softcap * tanh(logits / softcap), tanh(x) = 1 - 2 / (exp(2x) + 1)
            logits = softcap * (1.0 - 2.0 / (tl.exp(2.0 * logits / softcap) + 1.0))
        logits = tl.where(col_ok[None, :], logits, float("-inf"))
        picked += tl.sum(tl.where(cols[None, :] == targets[:, None], logits, 0.0), axis=1)
        tile_max = tl.max(logits, axis=1)
        if TRACK_ARGMAX:  # tiles go left to right: a later tile wins only with a larger max
            first_max = tl.min(tl.where(logits == tile_max[:, None], cols[None, :], V), axis=1)
            best = tl.where(tile_max > running_max, first_max, best)
        new_max = tl.maximum(running_max, tile_max)
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
        running_max = new_max
    offsets = split * T + rows
    tl.store(max_ptr + offsets, running_max, mask=row_ok)
    tl.store(sum_ptr + offsets, running_sum, mask=row_ok)
    tl.store(picked_ptr + offsets, picked, mask=row_ok)
    if TRACK_ARGMAX:
        tl.store(argmax_ptr + offsets, best, mask=row_ok)


def _n_splits(n_rows: int, block_t: int, vocab: int, block_v: int, device: torch.device) -> int:
    """Vocabulary splits so that row blocks × splits fill the device about twice over."""
    programs = 2 * (torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 2)
    row_blocks = triton.cdiv(n_rows, block_t)
    return max(1, min(MAX_SPLITS, triton.cdiv(vocab, block_v), triton.cdiv(programs, row_blocks)))


def answer_logprobs_triton(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                           bias: torch.Tensor | None = None, transform: LogitTransform = PLAIN,
                           return_lse: bool = False, with_greedy: bool = False):
    """Same as :func:`answer_logprobs_torch` through the fused Triton kernel: [T] float32, then
    the per-row logsumexp [T] when ``return_lse`` and whether each target is the argmax [T] when
    ``with_greedy``."""
    n_rows, dim = hidden.shape
    vocab = weight.shape[0]
    if n_rows == 0:
        empty = torch.empty(0, dtype=torch.float32, device=hidden.device)
        extra = ((empty.clone(),) if return_lse else ()) + ((empty.bool(),) if with_greedy else ())
        return (empty, *extra) if extra else empty
    shape = (MAX_SPLITS, n_rows)
    maxes = torch.full(shape, float("-inf"), dtype=torch.float32, device=hidden.device)
    sums = torch.zeros(shape, dtype=torch.float32, device=hidden.device)
    picked = torch.zeros(shape, dtype=torch.float32, device=hidden.device)
    argmax = torch.zeros(shape if with_greedy else (1,), dtype=torch.int32, device=hidden.device)

    def splits(meta):
        return _n_splits(n_rows, meta["BLOCK_T"], vocab, meta["BLOCK_V"], hidden.device)

    _partials_kernel[lambda meta: (triton.cdiv(n_rows, meta["BLOCK_T"]), splits(meta))](
        hidden, weight, bias if bias is not None else weight, targets, maxes, sums, picked, argmax,
        n_rows, vocab, dim, triton.next_power_of_2(n_rows), hidden.stride(0), hidden.stride(1),
        weight.stride(0), weight.stride(1), transform.scale, transform.softcap or 1.0, HAS_BIAS=bias is not None,
        HAS_SCALE=transform.scale != 1.0, HAS_SOFTCAP=transform.softcap is not None, TRACK_ARGMAX=with_greedy,
        UPCAST=interpreting(), IEEE=hidden.dtype == torch.float32,
    )
    used = splits(chosen_meta(_partials_kernel))  # rows past these may hold autotuning runs of other configs
    maxes, sums, picked = maxes[:used], sums[:used], picked[:used]
    top = maxes.max(dim=0).values
    lse = top + torch.log((sums * torch.exp(maxes - top)).sum(dim=0))
    logprobs = picked.sum(dim=0) - lse
    extra = (lse,) if return_lse else ()
    if with_greedy:  # splits cover the vocabulary left to right: the first split with the max wins ties
        first = argmax[:used].gather(0, maxes.argmax(dim=0)[None]).squeeze(0)
        extra += (first.long() == targets,)
    return (logprobs, *extra) if extra else logprobs


def answer_logprobs_for(kernels: str):
    """The answer-log-prob function of a resolved ``kernels`` choice (``triton`` or ``torch``); the
    torch one with a :class:`~invscale.kernels.cpu_linear.Scratch` of its own, for one runner."""
    if kernels == "triton":
        return answer_logprobs_triton
    return functools.partial(answer_logprobs_torch, scratch=cpu_linear.Scratch())
