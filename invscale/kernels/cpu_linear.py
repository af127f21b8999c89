"""float32 linear layers on CPU through oneDNN's matrix product instead of the BLAS one.

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
gradient-free float32 CPU inputs of at least :data:`MIN_ROWS` rows (below that, the BLAS call is
as fast or faster).
"""

from __future__ import annotations

import platform
import types
from contextlib import contextmanager
from functools import cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MIN_ROWS = 32
PROBE_TOLERANCE = 1e-5  # relative to the largest output, for the one-off check against F.linear
X86_64 = ("x86_64", "amd64")  # where the gain was measured; elsewhere torch's BLAS may be the faster one


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


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN for gradient-free float32 CPU inputs of at least
    :data:`MIN_ROWS` rows and a contiguous weight, when :func:`available`."""
    if (x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu" and weight.device.type == "cpu"
            and weight.is_contiguous() and not torch.is_grad_enabled() and x.dim() >= 2
            and x.numel() >= MIN_ROWS * x.shape[-1] and available()):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _routed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, self.weight, self.bias)


def _routable(module: nn.Module) -> bool:
    """A plain nn.Linear with plain float32 CPU weights whose forward nothing else has replaced
    (accelerate's device hooks, for one, wrap ``forward`` on the instance)."""
    return (type(module) is nn.Linear and type(module.weight.data) is torch.Tensor
            and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu"
            and "forward" not in module.__dict__ and not hasattr(module, "_hf_hook"))


def route(module: nn.Module) -> Callable[[], None]:
    """Send ``module``'s routable linear layers through :func:`linear`; returns the function that
    gives them their own forward back. Does nothing when oneDNN is not :func:`available`; layers
    already routed (by a caller still using them) are left to that caller."""
    linears = [m for m in module.modules() if _routable(m) and "forward" not in m.__dict__] if available() else []
    for m in linears:
        m.forward = types.MethodType(_routed_forward, m)

    def restore() -> None:
        for m in linears:
            m.__dict__.pop("forward", None)
    return restore


@contextmanager
def routed(module: nn.Module):
    """:func:`route` for the ``with`` block's lifetime."""
    restore = route(module)
    try:
        yield
    finally:
        restore()
