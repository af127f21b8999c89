"""Linear layers on CPU through oneDNN (float32) or widened to float32 (half precision without the
CPU's own products): the same numbers as F.linear, only where it applies,
and the scorer's runners route the model's layers there only while they run."""

import platform
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invscale.kernels import cpu_linear
from invscale.kernels.fused_head import answer_logprobs_for, answer_logprobs_torch
from invscale.scoring.runner import PackRunner
from invscale.scoring.scorer import score_token_sequences


def shared_prefix_sequences(seed: int, vocab: int, shared_length: int) -> list[tuple[tuple[int, ...], int]]:
    """12 random (tokens, answer length) sequences after one shared prefix of ``shared_length``."""
    rng = random.Random(seed)
    shared = tuple(rng.randrange(vocab) for _ in range(shared_length))
    return [(shared + tuple(rng.randrange(vocab) for _ in range(rng.randint(1, 30))), rng.randint(1, 3))
            for _ in range(12)]


def full_forward_logprob(model, tokens: tuple[int, ...], n_answer: int) -> float:
    """The summed log-prob of the last ``n_answer`` tokens by the model's own full forward."""
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].double().log_softmax(-1)
    return sum(logits[p - 1, tokens[p]].item() for p in range(len(tokens) - n_answer, len(tokens)))


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


def test_only_plain_linears_in_a_dtype_linear_computes_or_widens_are_routed_and_all_are_restored():
    class Wrapped(nn.Linear):
        pass

    hooked = nn.Linear(8, 8)
    hooked.forward = lambda x: x  # stands for a forward another library replaced
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8).to(torch.bfloat16), nn.Linear(8, 8).to(torch.float16),
                          Wrapped(8, 8), hooked, nn.Sequential(nn.Linear(8, 8)))
    restore = cpu_linear.route(model)
    routed = [i for i, m in enumerate(model.modules()) if "forward" in m.__dict__ and m is not hooked]
    takes = [cpu_linear.available(), cpu_linear.computes(torch.bfloat16) or cpu_linear.widens(torch.bfloat16),
             cpu_linear.widens(torch.float16)]
    assert routed == [i for i, taken in zip([1, 2, 3], takes) if taken] + ([7] if cpu_linear.available() else [])
    x = torch.randn(40, 8)
    with torch.no_grad():
        assert torch.allclose(model[0](x), F.linear(x, model[0].weight, model[0].bias), atol=1e-6)
    restore()
    assert [m for m in model.modules() if "forward" in m.__dict__] == [hooked]


def test_weights_are_packed_only_within_the_budget_and_only_in_a_dtype_onednn_computes():
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8)))
    routable_bytes = 2 * model[0].weight.nbytes
    for pack_within in (0, routable_bytes - 1, routable_bytes):
        restore = cpu_linear.route(model, pack_within)
        if cpu_linear.available():
            packed = model[0].forward.args[1]
            assert (packed is not None) == (pack_within == routable_bytes and cpu_linear.packing_available())
        restore()
    model.append(nn.Linear(8, 8).to(torch.bfloat16))
    restore = cpu_linear.route(model, 10 ** 9)
    if cpu_linear.widens(torch.bfloat16):  # a widened layer has no packed form: none is packed
        assert all(m.forward.args[1] is None for m in model.modules() if "forward" in m.__dict__)
    restore()


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
    sequences = shared_prefix_sequences(3, model.config.vocab_size, 40)
    logprobs, _ = score_token_sequences(model, sequences, max_tokens_per_pack=96)
    assert any(shape[-2] >= cpu_linear.MIN_ROWS for shape in calls), "the layers ran through the routed linear"
    for value, (tokens, n_answer) in zip(logprobs, sequences):
        assert abs(value - full_forward_logprob(model, tokens, n_answer)) <= 1e-4


def test_cache_runner_routes_the_whole_model_head_included_while_open(loaded_models):
    from invscale.scoring.cache_runner import CacheRunner

    model = loaded_models["llama-gqa2"].model
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert model.get_output_embeddings() in linears
    with CacheRunner(model):
        assert all("forward" in m.__dict__ for m in linears) == cpu_linear.available()
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_half_precision_goes_through_onednn_where_the_cpu_computes_it_and_is_widened_elsewhere():
    """On a CPU without bfloat16 instructions (AVX2 alone) oneDNN refuses bfloat16 products, and
    bfloat16 layers are computed in float32 from widened inputs instead of torch's slow loops; where
    oneDNN computes them they match F.linear's float32 sums to bfloat16 rounding, packed or not.
    float16 is widened wherever oneDNN has no float16 product."""
    cpu_has_bfloat16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    x86 = platform.machine().lower() in cpu_linear.X86_64
    assert cpu_linear.bfloat16_available() == (cpu_linear.available() and cpu_has_bfloat16)
    assert cpu_linear.computes(torch.bfloat16) == cpu_linear.bfloat16_available()
    assert cpu_linear.widens(torch.bfloat16) == (x86 and not cpu_has_bfloat16)
    assert cpu_linear.widens(torch.float16) == (x86 and not torch.ops.mkldnn._is_mkldnn_fp16_supported())
    assert not cpu_linear.computes(torch.float16) and not cpu_linear.widens(torch.float32)
    generator = torch.Generator().manual_seed(5)
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.randn(2, 70, 96, generator=generator).to(dtype)
        weight, bias = torch.randn(80, 96, generator=generator).to(dtype), torch.randn(80, generator=generator).to(dtype)
        exact = F.linear(x.double(), weight.double(), bias.double())
        with torch.no_grad():
            outputs = [cpu_linear.linear(x, weight, bias), F.linear(x, weight, bias)]
            if dtype == torch.bfloat16 and cpu_linear.bfloat16_available():
                outputs.append(cpu_linear.linear(x, weight, bias, cpu_linear.pack(weight)))
        unit = 2 ** -8 if dtype == torch.bfloat16 else 2 ** -11  # half a unit in the last place, relative
        for got in outputs:
            assert got.dtype == dtype
            assert ((got.double() - exact).abs() <= 2 * unit * exact.abs() + 1e-3 * exact.abs().max()).all()


def test_widened_layers_share_one_scratch_of_the_largest_weight_and_keep_each_layers_numbers():
    """Routed half-precision layers of several shapes, run in turn through their shared scratch
    buffer (which grows and is then reused for smaller weights), give each layer's own widened
    product, never a neighbour's weight."""
    if not cpu_linear.widens(torch.bfloat16):
        pytest.skip("this CPU computes bfloat16 products itself")
    model = nn.Sequential(nn.Linear(64, 96), nn.Linear(96, 160), nn.Linear(160, 48), nn.Linear(48, 64)).to(torch.bfloat16)
    x = torch.randn(3, 50, 64).bfloat16()
    with torch.no_grad():
        expected = x
        for layer in model:
            expected = F.linear(expected.float(), layer.weight.float(), layer.bias.float()).bfloat16()
        with cpu_linear.routed(model):
            scratch = model[0].forward.args[2]
            assert all(m.forward.args[2] is scratch for m in model)
            assert torch.equal(model(x), expected) and torch.equal(model(x), expected)
            assert scratch._buffer.numel() == 96 * 160


def test_a_runners_head_widens_into_its_own_scratch_and_gives_the_same_log_probs():
    """The torch head function a runner gets widens a half-precision head into a scratch buffer of
    its own, reused across calls and heads, with the same log-probs as a fresh float32 copy."""
    if not cpu_linear.widens(torch.bfloat16):
        pytest.skip("this CPU computes bfloat16 products itself")
    head = answer_logprobs_for("torch")
    scratch = head.keywords["scratch"]
    assert answer_logprobs_for("torch").keywords["scratch"] is not scratch
    generator = torch.Generator().manual_seed(8)
    for vocab, rows in ((900, 40), (1500, 70), (700, 33)):
        hidden = torch.randn(rows, 64, generator=generator).bfloat16()
        weight = torch.randn(vocab, 64, generator=generator).bfloat16()
        targets = torch.randint(vocab, (rows,), generator=generator)
        expected = answer_logprobs_torch(hidden, weight, targets, rows_per_chunk=16, with_greedy=True)
        got = head(hidden, weight, targets, rows_per_chunk=16, with_greedy=True)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert scratch._buffer.numel() == 1500 * 64


def test_bfloat16_scores_are_as_close_to_float32_as_the_models_own_bfloat16_forward(checkpoint_dirs, monkeypatch):
    """The scorer's bfloat16 run (its linear layers widened where the CPU has no bfloat16
    products) strays from the float32 scores no further than the model's own bfloat16 forward,
    sequence by sequence, within bfloat16's rounding."""
    from invscale.models import load_model

    exact = load_model(checkpoint_dirs["llama-gqa2"], dtype="float32", device="cpu").model
    half = load_model(checkpoint_dirs["llama-gqa2"], dtype="bfloat16", device="cpu").model
    calls = []
    plain_widened = cpu_linear.widened
    monkeypatch.setattr(cpu_linear, "widened", lambda *args: calls.append(args[0].shape) or plain_widened(*args))
    sequences = shared_prefix_sequences(4, half.config.vocab_size, 50)
    logprobs, _ = score_token_sequences(half, sequences, max_tokens_per_pack=120)
    assert bool(calls) == cpu_linear.widens(torch.bfloat16)
    for value, (tokens, n_answer) in zip(logprobs, sequences):
        reference, own_half = full_forward_logprob(exact, tokens, n_answer), full_forward_logprob(half, tokens, n_answer)
        assert abs(value - reference) <= 2 * abs(own_half - reference) + 0.02 * n_answer, (value, own_half, reference)
