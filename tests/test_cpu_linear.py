"""float32 linear layers through oneDNN on CPU: the same numbers as F.linear, only where it applies,
and the scorer's runners route the model's layers there only while they run."""

import platform
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invscale.kernels import cpu_linear
from invscale.scoring.runner import PackRunner
from invscale.scoring.scorer import score_token_sequences


def test_onednn_is_available_where_torch_has_it():
    """The probe must not turn the fast path off by mistake on a CPU build that has oneDNN."""
    has_op = hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()
    assert cpu_linear.available() == (has_op and platform.machine().lower() in cpu_linear.X86_64)


@pytest.mark.parametrize("rows", [1, 31, 32, 257, 1030])
def test_linear_equals_the_float64_product(rows):
    generator = torch.Generator().manual_seed(rows)
    for shape, (d_in, d_out), with_bias in [((rows,), (48, 40), True), ((2, rows), (96, 200), False),
                                            ((1, rows), (576, 192), True)]:
        x = torch.randn(*shape, d_in, generator=generator)
        weight = torch.randn(d_out, d_in, generator=generator)
        bias = torch.randn(d_out, generator=generator) if with_bias else None
        for given in (x, x.transpose(-1, -2).contiguous().transpose(-1, -2)):  # contiguous and strided
            with torch.no_grad():
                got = cpu_linear.linear(given, weight, bias)
            exact = F.linear(given.double(), weight.double(), None if bias is None else bias.double())
            assert got.dtype == torch.float32 and got.shape == exact.shape
            assert (got.double() - exact).abs().max() <= 1e-5 * exact.abs().max()
            if cpu_linear.packing_available():
                with torch.no_grad():
                    assert torch.equal(cpu_linear.linear(given, weight, bias, cpu_linear.pack(weight)), got)


def test_only_plain_linears_in_a_dtype_onednn_computes_are_routed_and_all_are_restored():
    class Wrapped(nn.Linear):
        pass

    hooked = nn.Linear(8, 8)
    hooked.forward = lambda x: x  # stands for a forward another library replaced
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8).to(torch.bfloat16), Wrapped(8, 8), hooked,
                          nn.Sequential(nn.Linear(8, 8)))
    x = torch.randn(40, 8)
    routable_bytes = 2 * model[0].weight.nbytes
    for pack_within in (0, routable_bytes - 1, routable_bytes):  # packed copies only within the budget
        restore = cpu_linear.route(model, pack_within)
        routed = [i for i, m in enumerate(model.modules()) if "forward" in m.__dict__ and m is not hooked]
        expected = ([1] if cpu_linear.available() else []) + ([2] if cpu_linear.bfloat16_available() else [])
        assert routed == expected + ([6] if cpu_linear.available() else [])
        if routed:
            packed = model[0].forward.args[1]
            assert (packed is not None) == (pack_within == routable_bytes and cpu_linear.packing_available())
        with torch.no_grad():
            assert torch.allclose(model[0](x), F.linear(x, model[0].weight, model[0].bias), atol=1e-6)
        restore()
        assert [m for m in model.modules() if "forward" in m.__dict__] == [hooked]


def test_runner_routes_its_body_while_open_and_scores_exactly(loaded_models, monkeypatch):
    model = loaded_models["llama-gqa2"].model
    body_linears = [m for m in model.base_model.modules() if type(m) is nn.Linear]
    with PackRunner(model):
        assert all("forward" in m.__dict__ for m in body_linears) == cpu_linear.available()
        if cpu_linear.packing_available():  # a tiny model's weights fit any free memory
            assert all(m.forward.args[1] is not None for m in body_linears)
    assert not any("forward" in m.__dict__ for m in model.modules())

    calls = []
    plain_linear = cpu_linear.linear
    monkeypatch.setattr(cpu_linear, "linear", lambda *args: calls.append(args[0].shape) or plain_linear(*args))
    rng = random.Random(3)
    vocab = model.config.vocab_size
    shared = tuple(rng.randrange(vocab) for _ in range(40))
    sequences = [(shared + tuple(rng.randrange(vocab) for _ in range(rng.randint(1, 30))), rng.randint(1, 3))
                 for _ in range(12)]
    logprobs, _ = score_token_sequences(model, sequences, max_tokens_per_pack=96)
    assert any(shape[-2] >= cpu_linear.MIN_ROWS for shape in calls), "the layers ran through the routed linear"
    for value, (tokens, n_answer) in zip(logprobs, sequences):
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0].double().log_softmax(-1)
        positions = range(len(tokens) - n_answer, len(tokens))
        expected = sum(logits[p - 1, tokens[p]].item() for p in positions)
        assert abs(value - expected) <= 1e-4


def test_bfloat16_goes_through_onednn_only_where_the_cpu_computes_it():
    """On a CPU without bfloat16 instructions (AVX2 alone) oneDNN refuses bfloat16 products, and
    bfloat16 layers must keep F.linear; where it computes them they match F.linear's float32 sums
    to bfloat16 rounding, packed or not."""
    cpu_has_bfloat16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_linear.bfloat16_available() == (cpu_linear.available() and cpu_has_bfloat16)
    assert cpu_linear.computes(torch.bfloat16) == cpu_linear.bfloat16_available()
    assert not cpu_linear.computes(torch.float16)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 70, 96, generator=generator).bfloat16()
    weight, bias = torch.randn(80, 96, generator=generator).bfloat16(), torch.randn(80, generator=generator).bfloat16()
    exact = F.linear(x.float(), weight.float(), bias.float())
    with torch.no_grad():
        outputs = [cpu_linear.linear(x, weight, bias)]
        if cpu_linear.bfloat16_available():
            outputs.append(cpu_linear.linear(x, weight, bias, cpu_linear.pack(weight)))
    for got in outputs:
        assert got.dtype == torch.bfloat16
        assert (got.float() - exact).abs().max() <= 2 ** -6 * exact.abs().max()
