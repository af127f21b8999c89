"""Every causal LM architecture the installed transformers ships is scored exactly; only what is not
a causal LM is refused, before any work.

One test per model type in transformers' own causal-LM mapping (``pytest tests/test_conformance.py
-v`` lists the matrix): each, built tiny with its features on (tests/conformance.py), must match the
plain per-option forward pass within 1e-4 on the path ``auto`` takes: the trie for the architectures
the table proved there (with the features it claims actually exercised), the cache path for every
other one, a type newer than the table included. A type whose config cannot be made tiny is listed
in ``conformance.UNBUILDABLE`` with why, and skipped with that reason.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from typer.testing import CliRunner

from conformance import (UNBUILDABLE, WINDOW, build_tiny, conformance_rows, max_difference, scored_difference,
                         tiny_config)
from invscale.cli import app
from invscale.scoring import attention
from invscale.scoring.architectures import (REFUSED, SUPPORTED, TRIE_UNSUITED, UnsupportedModel, check_architecture,
                                            cache_path_markdown, check_causal_lm, check_model_type, config_features,
                                            refused_markdown, supported_markdown)
from invscale.scoring.scorer import ScoringJob
from invscale.scoring.streamed import StreamedModel

TOL = 1e-4
ALL_TYPES = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from invscale.tiny import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def dataset():
    return conformance_rows()


@pytest.fixture
def seen(monkeypatch):
    """Windows, soft caps and ALiBi slopes the attention backends were called with."""
    calls = {"window": set(), "softcap": set(), "alibi": set()}

    def recording(backend):
        def call(query, key, value, context, scaling, window=None, softcap=None, **alibi):
            calls["window"].add(window)
            calls["softcap"].add(softcap)
            calls["alibi"].add("slopes" in alibi)
            return backend(query, key, value, context, scaling, window, softcap, **alibi)
        return call

    for name, backend in list(attention._BACKENDS.items()):
        monkeypatch.setitem(attention._BACKENDS, name, recording(backend))
    return calls


class _Config:
    def __init__(self, model_type):
        self.model_type = model_type


@pytest.mark.parametrize("model_type", ALL_TYPES)
def test_architecture_is_exact_or_refused(model_type, tokenizer, dataset, seen):
    if model_type in REFUSED:
        with pytest.raises(UnsupportedModel, match=rf"^{re.escape(model_type)}: .*cannot score it exactly"):
            check_causal_lm(_Config(model_type))
        return
    if model_type in UNBUILDABLE:
        with pytest.raises(Exception):
            build_tiny(model_type, tokenizer)
        pytest.skip(f"{model_type} cannot be built tiny: {UNBUILDABLE[model_type]}")
    model = build_tiny(model_type, tokenizer)
    worst, path = scored_difference(model, tokenizer, dataset, backend="auto")  # the CPU default: segments
    assert worst <= TOL
    if model_type not in SUPPORTED:
        assert path.name == "cache" and path.mode is not None
        return
    assert path.name == "trie"
    claimed = SUPPORTED[model_type]
    assert config_features(model.config) == claimed, "the table claims exactly the features this test exercises"
    if "sliding window" in claimed:
        assert WINDOW in seen["window"], "some layer attended within its window"
    if "attention softcap" in claimed:
        assert seen["softcap"] - {None}, "some layer soft-capped its attention logits"
    if "ALiBi" in claimed:
        assert seen["alibi"] == {True}, "every layer biased its scores by ALiBi"


def test_table_names_only_installed_architectures():
    installed = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    assert not (set(SUPPORTED) & set(REFUSED)) and not (set(SUPPORTED) & set(TRIE_UNSUITED))
    assert not (set(TRIE_UNSUITED) & set(REFUSED))
    assert set(SUPPORTED) <= installed and set(REFUSED) <= installed and set(TRIE_UNSUITED) <= installed
    assert set(UNBUILDABLE) <= installed - set(REFUSED)


def test_unknown_architecture_takes_the_cache_path():
    """A model type the table has never seen is not the trie's, and it is a causal LM: the cache path."""
    from invscale.scoring.paths import choose_path

    with pytest.raises(UnsupportedModel, match="^my_new_lm: this architecture has not been checked exact on the trie"):
        check_model_type(_Config("my_new_lm"))
    check_causal_lm(_Config("my_new_lm"))
    assert choose_path(_Config("my_new_lm")).name == "cache"


def test_unchecked_feature_is_refused_unless_no_sequence_reaches_it():
    """Qwen2-MoE keeps its window in the causal mask alone, so a window is refused, except where
    every sequence is shorter than it (then it changes nothing)."""
    config = tiny_config("qwen2_moe", 500)
    config.use_sliding_window, config.sliding_window = True, WINDOW
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    with pytest.raises(UnsupportedModel, match="qwen2_moe: sliding window has not been checked exact on the trie"):
        check_architecture(config, longest_sequence=WINDOW + 1)
    check_architecture(config, longest_sequence=WINDOW)


def test_length_dependent_rotary_is_refused_past_its_switch():
    config = tiny_config("phi3", 500)
    config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 64,
                              "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}
    check_architecture(config, longest_sequence=64)
    with pytest.raises(UnsupportedModel, match="rotary embedding changes past 64 tokens"):
        check_architecture(config, longest_sequence=65)


# windowed families, and those whose own attention code is routed to the tree (a window, ALiBi)
WINDOWED = ["mistral", "gemma2", "gemma3_text", "gpt_neo", "bloom", "mpt"]


@pytest.mark.parametrize("model_type", WINDOWED)
@pytest.mark.parametrize("backend,kernels", [("sdpa", "torch"), ("segments", "torch"), ("flex", "torch"),
                                             ("triton", "triton")])
def test_windowed_families_exact_in_every_backend(model_type, backend, kernels, tokenizer, dataset):
    model = build_tiny(model_type, tokenizer, seed=5)
    assert max_difference(model, tokenizer, dataset, backend=backend, kernels=kernels, max_tokens=64) <= TOL


@pytest.mark.parametrize("model_type", WINDOWED)
def test_windowed_families_streamed_equal_resident(model_type, tokenizer, dataset, tmp_path):
    model = build_tiny(model_type, tokenizer, seed=6)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    tokenizer.save_pretrained(tmp_path)
    resident = {r["index"]: r["class_logprobs"] for r in ScoringJob(model, tokenizer, dataset).results()}
    streamed = StreamedModel(tmp_path, torch.float32, torch.device("cpu"))
    job = ScoringJob(None, tokenizer, dataset, streamed=streamed, memory_budget=None)
    for result in job.results():
        assert max(abs(a - b) for a, b in zip(result["class_logprobs"], resident[result["index"]])) <= 1e-5


def test_refused_before_any_work(tmp_path, tokenizer):
    """A checkpoint of what is not a causal LM is refused from its config: no weights are even read."""
    from transformers import CONFIG_MAPPING

    CONFIG_MAPPING["bert"](hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                           vocab_size=len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "Is it?", "classes": [" yes", " no"], "answer_index": 0}\n')
    result = CliRunner().invoke(app, ["score", str(data), "--model", str(tmp_path), "--device", "cpu",
                                      "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "bert: an encoder architecture" in message and "cannot score it exactly" in message
    assert "Traceback" not in result.output


def test_readme_lists_the_supported_architectures():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for listing in (supported_markdown(), cache_path_markdown(), refused_markdown()):
        assert listing in readme, "regenerate the README's lists with invscale.scoring.architectures"


def test_conformance_survey_runs():
    """The maintainer's survey script (how the table is kept up to date) runs and reports."""
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("conformance.py")), "llama", "mamba"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "trie max |diff|" in lines["llama"]
    assert "cache (step) max |diff|" in lines["mamba"]
