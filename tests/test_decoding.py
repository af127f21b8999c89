"""The generation loop against transformers' own ``generate``, token for token, and its sampling
against transformers' warpers; sampled tokens independent of batch layout."""

import sys
import tempfile

import pytest
import torch

from invscale.decoding import Decoder, DecodingSettings
from invscale.decoding.sampling import filtered_probabilities, next_tokens, sample_stream
from invscale.decoding.stops import StopFinder
from invscale.scoring.cache_runner import CacheRunner
from invscale.tiny import train_tokenizer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conformance import build_tiny  # noqa: E402

NEAR_TIE = 1e-4  # a token may differ from generate's only where the top two log-probs are this close


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tempfile.mkdtemp())


def ragged_contexts(n: int, seed: int, vocabulary: int = 300, preface: int = 20, longest: int = 14):
    """``n`` random contexts: a shared preface, then 1 to ``longest`` tokens of their own."""
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randint(5, vocabulary, (preface,), generator=generator).tolist()
    return shared, [shared + torch.randint(5, vocabulary, (int(torch.randint(1, longest + 1, (1,), generator=generator)),),
                                           generator=generator).tolist() for _ in range(n)]


def reference_generate(model, context, max_new_tokens):
    """transformers' greedy generate of one prompt alone (EOS included when met)."""
    out = model.generate(torch.tensor([context]), do_sample=False, max_new_tokens=max_new_tokens,
                         min_new_tokens=0, pad_token_id=0)
    return out[0, len(context):].tolist()


def count_differences(model, decoder, contexts, generations, references) -> int:
    """Samples whose tokens differ from generate's; each must first differ at a near-tie."""
    differing = 0
    for context, generation, reference in zip(contexts, generations, references):
        got = list(generation.tokens) + ([reference[-1]] if generation.stop == "eos" else [])
        if got == reference:
            continue
        differing += 1
        step = next(k for k, (a, b) in enumerate(zip(got + [-1], reference + [-1])) if a != b)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([list(context) + reference[:step]])).logits[0, -1].float()
        top = logits.log_softmax(-1).topk(2).values
        assert float(top[0] - top[1]) <= NEAR_TIE, f"differs at step {step}, not at a near-tie"
    return differing


@pytest.mark.parametrize("model_type", ["opt", "llama", "gpt_neox"])
def test_greedy_equals_generate_token_for_token(model_type, tokenizer):
    """200 ragged prompts after one preface, at batch sizes 1, 7 and 32: each equals transformers'
    generate of the prompt alone (differences only at near-ties, counted)."""
    model = build_tiny(model_type, tokenizer, seed=3).eval()
    preface, contexts = ragged_contexts(200, seed=7)
    references = [reference_generate(model, context, 10) for context in contexts]
    with Decoder(model, tokenizer) as decoder:
        assert decoder.runner.mode == "multi" and decoder.padded
        decoder.set_preface(preface)
        for batch_size in (1, 7, 32):
            found = decoder.generate(contexts, DecodingSettings(max_new_tokens=10), batch_size=batch_size)
            differing = count_differences(model, decoder, contexts, [gens[0] for gens in found], references)
            print(f"{model_type} batch {batch_size}: {differing} of {len(contexts)} differ, all at near-ties")


@pytest.mark.parametrize("model_type,mode", [("mamba", "step"), ("gpt_neo", "multi"), ("llama", "plain")])
def test_other_cache_modes_generate_as_generate(model_type, mode, tokenizer):
    """A state-space model (one token per forward), a windowed one (one prompt per batch) and a
    model run without a cache generate as transformers' generate does."""
    model = build_tiny(model_type, tokenizer, seed=4).eval()
    preface, contexts = ragged_contexts(12, seed=8)
    runner = CacheRunner(model, mode="plain" if mode == "plain" else None)
    with Decoder(model, tokenizer, runner=runner) as decoder:
        assert decoder.runner.mode == mode and not decoder.padded
        decoder.set_preface(preface)
        found = decoder.generate(contexts, DecodingSettings(max_new_tokens=8), batch_size=8)
        references = [reference_generate(model, context, 8) for context in contexts]
        assert count_differences(model, decoder, contexts, [gens[0] for gens in found], references) == 0


def test_samples_do_not_depend_on_batch_layout(tokenizer):
    """One seed gives the same samples at batch sizes 1, 7 and 32, and for a row alone; the
    samples of a row differ from each other; another seed gives others."""
    model = build_tiny("llama", tokenizer, seed=5).eval()
    preface, contexts = ragged_contexts(20, seed=9)
    settings = DecodingSettings(max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.95, samples=3, seed=11)
    with Decoder(model, tokenizer) as decoder:
        decoder.set_preface(preface)
        by_batch = {size: [[g.tokens for g in gens] for gens in decoder.generate(contexts, settings, batch_size=size)]
                    for size in (1, 7, 32)}
        assert by_batch[1] == by_batch[7] == by_batch[32]
        alone = decoder.generate([contexts[5]], settings, rows=[5])[0]
        assert [g.tokens for g in alone] == by_batch[7][5]
        assert len({tokens for tokens in by_batch[1][0]}) > 1
        other = decoder.generate(contexts, DecodingSettings(**{**settings.describe(), "seed": 12}), batch_size=7)
        assert [[g.tokens for g in gens] for gens in other] != by_batch[7]


def test_warpers_equal_transformers():
    """Temperature, top-k and top-p keep the tokens transformers' warpers keep, with its weights."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    generator = torch.Generator().manual_seed(0)
    for temperature, top_k, top_p in [(0.5, 0, 1.0), (1.0, 7, 1.0), (0.7, 0, 0.8), (1.3, 20, 0.5), (1.0, 0, 0.01)]:
        logits = torch.randn(5, 97, generator=generator, dtype=torch.float64) * 3
        settings = DecodingSettings(max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p)
        expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
        if top_k:
            expected = TopKLogitsWarper(top_k)(None, expected)
        if top_p < 1:
            expected = TopPLogitsWarper(top_p)(None, expected)
        torch.testing.assert_close(filtered_probabilities(logits, settings), expected.softmax(-1), rtol=0, atol=1e-12)


def test_draws_follow_the_probabilities():
    """Draws from fixed probabilities land on each token about as often as its probability says;
    top-k 1 is the argmax."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    settings = DecodingSettings(max_new_tokens=1, temperature=1.0)
    counts = torch.zeros(4)
    stream = sample_stream(0, 0, 0)
    for _ in range(4000):
        counts[next_tokens(logits, settings, [stream])[0]] += 1
    assert torch.allclose(counts / 4000, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
    top1 = DecodingSettings(max_new_tokens=1, temperature=2.0, top_k=1)
    assert all(next_tokens(logits, top1, [stream]) == [0] for _ in range(20))


def test_stop_strings_across_token_boundaries(tokenizer):
    """A stop string spanning tokens, or starting inside one, ends the text where it begins; the
    tokens kept are those wholly before it."""
    finder = StopFinder(tokenizer, ("ab", "\n\n"))
    tokens = tokenizer("the water xab more", add_special_tokens=False)["input_ids"]
    (at, stop), length = finder.find(tokens)
    text = finder.text(tokens)
    assert stop == "ab" and text[:at] == "the water x" and length == len(text)
    kept = finder.cut(tokens, at)
    assert text[:at].startswith(finder.text(kept)) and len(finder.text(kept)) <= at
    assert finder.find(tokenizer("no stop here", add_special_tokens=False)["input_ids"])[0] is None
    split = tokenizer("one\n", add_special_tokens=False)["input_ids"] + tokenizer("\nTwo", add_special_tokens=False)["input_ids"]
    (at, stop), _ = finder.find(split)
    assert stop == "\n\n" and finder.text(split)[:at] == "one"


def test_generation_ends_at_stops_eos_and_budget(tokenizer):
    """Each sample says why it ended; its text is its tokens' text; a budget of 0 writes nothing."""
    model = build_tiny("opt", tokenizer, seed=6).eval()
    preface, contexts = ragged_contexts(16, seed=10)
    with Decoder(model, tokenizer) as decoder:
        decoder.set_preface(preface)
        plain = decoder.generate(contexts, DecodingSettings(max_new_tokens=12))
        texts = [gens[0].text for gens in plain]
        stop = next(text[3:5] for text in texts if len(text) > 6)
        stopped = decoder.generate(contexts, DecodingSettings(max_new_tokens=12, stops=(stop,)))
        for before, (after,) in zip(plain, stopped):
            before = before[0]
            if stop in before.text:
                assert after.stop == "stop" and after.stop_string == stop
                assert after.text == before.text[:before.text.find(stop)]
                assert after.text.startswith(decoder.tokenizer.decode(list(after.tokens)))
            else:
                assert after == before
        assert all(gens[0].stop in ("eos", "budget") for gens in plain)
        assert all(len(gens[0].tokens) == 12 for gens in plain if gens[0].stop == "budget")
        assert decoder.generate(contexts[:2], DecodingSettings(max_new_tokens=0))[0][0].tokens == ()


@pytest.mark.parametrize("options,message", [
    (dict(max_new_tokens=-1), "max new tokens"), (dict(max_new_tokens=4, stops=("",)), "empty stop string"),
    (dict(max_new_tokens=4, top_p=0), "top-p"), (dict(max_new_tokens=4, samples=3), "greedy samples"),
    (dict(max_new_tokens=4, temperature=-1), "temperature"), (dict(max_new_tokens=4, top_k=-2), "top-k")])
def test_bad_settings_are_one_line(options, message):
    with pytest.raises(ValueError, match=message) as raised:
        DecodingSettings(**options)
    assert "\n" not in str(raised.value)
