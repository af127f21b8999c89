"""On a CUDA device: the scorer equals the HF reference there (fp32), and bf16 stays as close to
fp32 as the plain bf16 reference does. Skipped where no GPU is present."""

import pytest
import torch

from invscale.models import load_model
from invscale.scoring.scorer import ScoringJob
from random_data import as_dataset, random_classification
from reference import max_abs_diff, reference_logprob

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("backend", ["sdpa", "flex", "triton"])
@pytest.mark.parametrize("checkpoint", ["opt-plain", "opt-350m-shape"])
def test_cuda_fp32_matches_reference(checkpoint_dirs, checkpoint, backend):
    loaded = load_model(checkpoint_dirs[checkpoint], dtype="float32", device="cuda")
    dataset = as_dataset(random_classification(21, n_rows=16))
    for budget in (4096, 48):
        job = ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=budget, backend=backend,
                         kernels="triton" if backend == "triton" else "torch")
        results = {r["index"]: r for r in job.results()}
        for row in dataset.rows:
            expected = [reference_logprob(loaded.model, loaded.tokenizer, row.prompt, c) for c in row.classes]
            assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4


@pytest.mark.parametrize("backend", ["sdpa", "flex", "triton"])
def test_cuda_bf16_error_no_worse_than_plain_bf16(checkpoint_dirs, backend):
    # head_dim 16: the smallest the compiled flex kernel takes
    fp32 = load_model(checkpoint_dirs["opt-350m-shape"], dtype="float32", device="cuda")
    bf16 = load_model(checkpoint_dirs["opt-350m-shape"], dtype="bfloat16", device="cuda")
    dataset = as_dataset(random_classification(22, n_rows=16))
    job = ScoringJob(bf16.model, bf16.tokenizer, dataset, backend=backend,
                         kernels="triton" if backend == "triton" else "torch")
    results = {r["index"]: r for r in job.results()}
    ours, plain = [], []
    for row in dataset.rows:
        exact = [reference_logprob(fp32.model, fp32.tokenizer, row.prompt, c) for c in row.classes]
        plain_bf16 = [reference_logprob(bf16.model, bf16.tokenizer, row.prompt, c) for c in row.classes]
        ours.append(max_abs_diff(results[row.index]["class_logprobs"], exact))
        plain.append(max_abs_diff(plain_bf16, exact))
    assert max(ours) <= 2 * max(plain) + 0.05


def test_cuda_streamed_equals_resident(checkpoint_dirs):
    """Layer streaming on the GPU (pinned host copies on a side stream) gives the resident scores."""
    from invscale.scoring.streamed import StreamedModel

    loaded = load_model(checkpoint_dirs["llama-gqa3"], dtype="float32", device="cuda")
    dataset = as_dataset(random_classification(23, n_rows=16))
    resident = {r["index"]: r for r in ScoringJob(loaded.model, loaded.tokenizer, dataset, max_tokens_per_pack=200,
                                                  backend="sdpa").results()}
    streamed = StreamedModel(checkpoint_dirs["llama-gqa3"], torch.float32, torch.device("cuda"))
    job = ScoringJob(None, loaded.tokenizer, dataset, max_tokens_per_pack=200, backend="sdpa", streamed=streamed)
    for result in job.results():
        assert max_abs_diff(result["class_logprobs"], resident[result["index"]]["class_logprobs"]) <= 1e-5


@pytest.mark.parametrize("backend,kernels", [("sdpa", "torch"), ("flex", "torch"), ("triton", "triton")])
@pytest.mark.parametrize("model_type", ["mistral", "gemma2"])
def test_cuda_windows_and_soft_caps_match_reference(model_type, backend, kernels):
    """Sliding windows shorter than the prompts and soft caps, compiled flex and the Triton kernels
    on the GPU, against one plain forward per option (fp32)."""
    from conformance import build_tiny, conformance_rows
    from invscale.tiny import train_tokenizer

    import tempfile

    tokenizer = train_tokenizer(tempfile.mkdtemp())
    model = build_tiny(model_type, tokenizer, seed=3).to("cuda")
    dataset = conformance_rows()
    job = ScoringJob(model, tokenizer, dataset, max_tokens_per_pack=64, backend=backend, kernels=kernels)
    results = {r["index"]: r for r in job.results()}
    for row in dataset.rows:
        expected = [reference_logprob(model, tokenizer, row.prompt, c) for c in row.classes]
        assert max_abs_diff(results[row.index]["class_logprobs"], expected) <= 1e-4
