"""float32 (and, on CPUs with bfloat16 instructions, bfloat16) linear layers on CPU through oneDNN's
matrix product instead of the BLAS one; half-precision layers in float32 on CPUs without them.

PyTorch's x86 wheels compute a float32 ``F.linear`` with MKL, which picks its code path by CPU
vendor: on AMD CPUs it runs AVX2 code even where AVX-512 is there (measured on a 2-core Zen 5: 84
GFLOP/s a core, the AVX2 peak). oneDNN, in the same wheel (the product behind
``torch.ops.mkldnn._linear_pointwise``, which torch.compile's CPU backend calls), dispatches on the
instruction set: 350–410 GFLOP/s on the same two cores for the shapes of a small LM's layers (64 to
4,096 rows). The sums are the same float32 dot products, accumulated in another order, so the
results agree with ``F.linear`` to float32 rounding (checked once per process by :func:`available`
before it is ever used). Only x86-64 CPUs take this path: on others, oneDNN's speed against torch's
own BLAS is unmeasured.

:func:`route` sends a module's plain ``nn.Linear`` layers through :func:`linear` until the returned
function restores them; :func:`linear` itself falls back to ``F.linear`` for anything but
gradient-free CPU inputs of at least :data:`MIN_ROWS` rows in a dtype it :func:`computes` (below
that many rows, the BLAS call is as fast or faster). Where memory allows, :func:`route` also keeps a copy of each weight in
oneDNN's own blocked layout (:func:`pack`), which oneDNN otherwise rebuilds from the plain weight
at every call: the same products in the same order (bit-identical results), measured 3–18% faster
over a 30-layer stack of SmolLM2-135M's shapes (64 to 1,024 rows, 2-core Zen 3).

bfloat16 layers take the same path where oneDNN computes bfloat16 products on this CPU
(AVX512-BF16 or AMX; products accumulated in float32, the output rounded to bfloat16) and a
one-off check finds them equal to ``F.linear``'s to bfloat16 rounding (:func:`bfloat16_available`);
on a 2-core Zen 5 with AVX512-BF16 one 1,024 × 576 by 576 × 1,536 product measured 717 GFLOP/s
this way against 506 through ``F.linear`` (bench/RESULTS.md). Where the CPU has no bfloat16 (or
float16) products (AVX2 alone, say), ``F.linear`` runs them in torch's own loops at 15–21 GFLOP/s
against float32's 140–180 (2-core Zen 3); there :func:`linear` computes them in float32 from
widened copies of the inputs and rounds the output back (:func:`widened`): the same products of the
same half-precision values, accumulated in float32 as the CPUs with bfloat16 instructions do, at
143–165 GFLOP/s on 1,024 rows of SmolLM2-135M's and OPT-1.3B's shapes and 42–67 on 32
(bench/cpu_linear_rates.py).
"""

from __future__ import annotations

import platform
from contextlib import contextmanager
from functools import cache, partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MIN_ROWS = 32
PROBE_TOLERANCE = 1e-5  # relative to the largest output, for the one-off check against F.linear
BFLOAT16_PROBE_TOLERANCE = 2 ** -7  # the same for bfloat16 outputs: two units of their last place
X86_64 = ("x86_64", "amd64")  # where the gain was measured; elsewhere torch's BLAS may be the faster one
HALF_PRECISION = (torch.bfloat16, torch.float16)


@cache
def available() -> bool:
    """True on an x86-64 CPU where oneDNN's linear runs in this process and gives F.linear's float32
    results."""
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available() or platform.machine().lower() not in X86_64:
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, MIN_ROWS + 5, 48, generator=generator)
    weight, bias = torch.randn(40, 48, generator=generator), torch.randn(40, generator=generator)
    try:
        with torch.no_grad():
            got = op(x, weight, bias, "none", [], "")
    except RuntimeError:
        return False
    expected = F.linear(x, weight, bias)
    return got.shape == expected.shape and bool((got - expected).abs().max() <= PROBE_TOLERANCE * expected.abs().max())


@cache
def packing_available() -> bool:
    """True where :func:`available` holds and oneDNN's linear gives the same numbers from a weight in
    its own layout (:func:`pack`) as from the plain weight."""
    if not available() or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(MIN_ROWS + 7, 48, generator=generator)
    weight = torch.randn(40, 48, generator=generator)
    try:
        with torch.no_grad():
            got = linear(x, weight, None, pack(weight))
    except RuntimeError:
        return False
    return bool(torch.equal(got, linear(x, weight)))


@cache
def bfloat16_available() -> bool:
    """True where :func:`available` holds and oneDNN computes bfloat16 products on this CPU, equal
    to ``F.linear``'s float32 products of the same bfloat16 inputs to bfloat16 rounding, from the
    plain weight and from its :func:`pack` alike."""
    if not available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(MIN_ROWS + 7, 64, generator=generator).bfloat16()
    weight = torch.randn(48, 64, generator=generator).bfloat16()
    expected = F.linear(x.float(), weight.float())
    try:
        with torch.no_grad():
            outputs = [torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "") for w in (weight, pack(weight))]
    except RuntimeError:
        return False
    return all(out.dtype == torch.bfloat16 and out.shape == expected.shape
               and bool((out.float() - expected).abs().max() <= BFLOAT16_PROBE_TOLERANCE * expected.abs().max())
               for out in outputs)


def computes(dtype: torch.dtype) -> bool:
    """Whether :func:`linear` sends products in ``dtype`` through oneDNN on this CPU."""
    return (dtype == torch.float32 and available()) or (dtype == torch.bfloat16 and bfloat16_available())


@cache
def widens(dtype: torch.dtype) -> bool:
    """Whether :func:`linear` computes products in ``dtype`` (bfloat16 or float16) in float32
    (:func:`widened`): on an x86-64 CPU whose oneDNN has no product in that dtype, where
    ``F.linear`` would run it in torch's own loops."""
    if dtype not in HALF_PRECISION or platform.machine().lower() not in X86_64:
        return False
    native = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
    return not getattr(torch.ops.mkldnn, native)()


class Scratch:
    """A float32 buffer, grown as needed, that :func:`widened` copies weights into. A fresh float32
    copy of a large weight is faulted in page by page at every call (glibc maps allocations over 32
    MiB afresh): 31 ms against 3.7 ms into a held buffer for an 8,192 × 2,048 weight (2-core Zen 3),
    whose product with 1,024 rows takes about 240 ms."""

    def __init__(self) -> None:
        self._buffer = torch.empty(0)

    def widen(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` as float32, in this buffer (valid until the next call)."""
        if self._buffer.numel() < tensor.numel():
            self._buffer = torch.empty(tensor.numel())
        return self._buffer[:tensor.numel()].view(tensor.shape).copy_(tensor)


def widened(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            scratch: Scratch | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed in float32 from float32 copies of the inputs (the
    weight's in ``scratch`` when given), the output rounded to ``x``'s dtype: the products of the
    same half-precision values, accumulated in float32."""
    wide = weight.float() if scratch is None else scratch.widen(weight)
    return F.linear(x.float(), wide, None if bias is None else bias.float()).to(x.dtype)


def _packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN computes products in ``dtype`` from a :func:`pack`-ed weight on this CPU."""
    return packing_available() if dtype == torch.float32 else dtype == torch.bfloat16 and bfloat16_available()


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A copy of a linear weight in oneDNN's blocked layout, for :func:`linear`'s ``packed``."""
    return torch.ops.mkldnn._reorder_linear_weight(weight)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           packed: torch.Tensor | None = None, scratch: Scratch | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; for gradient-free CPU inputs of at least :data:`MIN_ROWS`
    rows and a contiguous weight, through oneDNN in a dtype it :func:`computes` (from ``packed``,
    the weight's :func:`pack`, when given), or in float32 for a dtype it :func:`widens` (the
    weight widened in ``scratch`` when given)."""
    if (x.dtype == weight.dtype and x.device.type == "cpu" and weight.device.type == "cpu"
            and weight.is_contiguous() and not torch.is_grad_enabled() and x.dim() >= 2
            and x.numel() >= MIN_ROWS * x.shape[-1]):
        if computes(x.dtype):
            return torch.ops.mkldnn._linear_pointwise(x, weight if packed is None else packed, bias, "none", [], "")
        if widens(x.dtype):
            return widened(x, weight, bias, scratch)
    return F.linear(x, weight, bias)


def _routed_forward(self: nn.Linear, packed: torch.Tensor | None, scratch: Scratch, x: torch.Tensor) -> torch.Tensor:
    return linear(x, self.weight, self.bias, packed, scratch)


def _routable(module: nn.Module) -> bool:
    """A plain nn.Linear with plain CPU weights in a dtype :func:`linear` :func:`computes` or
    :func:`widens`, whose forward nothing else has replaced (accelerate's device hooks, for one,
    wrap ``forward`` on the instance)."""
    return (type(module) is nn.Linear and type(module.weight.data) is torch.Tensor
            and (computes(module.weight.dtype) or widens(module.weight.dtype)) and module.weight.device.type == "cpu"
            and "forward" not in module.__dict__ and not hasattr(module, "_hf_hook"))


def route(module: nn.Module, pack_within: int = 0) -> Callable[[], None]:
    """Send ``module``'s routable linear layers through :func:`linear`; returns the function that
    gives them their own forward back (and drops any packed copies and the layers' shared
    :class:`Scratch`). Their weights are also :func:`pack`-ed while routed when all of them are in a
    dtype oneDNN :func:`computes` and take at most ``pack_within`` bytes. Does nothing when no
    layer is routable; layers already routed (by a caller still using them) are left to that
    caller."""
    linears = [m for m in module.modules() if _routable(m)]
    packing = (bool(linears) and sum(m.weight.nbytes for m in linears) <= pack_within
               and all(_packs(m.weight.dtype) for m in linears))
    scratch = Scratch()
    for m in linears:
        m.forward = partial(_routed_forward, m, pack(m.weight.detach()) if packing else None, scratch)

    def restore() -> None:
        for m in linears:
            m.__dict__.pop("forward", None)
    return restore


@contextmanager
def routed(module: nn.Module, pack_within: int = 0):
    """:func:`route` for the ``with`` block's lifetime."""
    restore = route(module, pack_within)
    try:
        yield
    finally:
        restore()
