"""invscale as an lm-evaluation-harness model: ``--model invscale``.

lm-eval's HF backend runs each (context, continuation) request as its own padded sequence. This
model is that backend with one change: ``loglikelihood`` sends all of a run's requests through the
trie scorer (or, for a model the trie cannot serve, the cache path) at once, so contexts that repeat across requests (few-shot examples, a question with
several options) are computed once. It keeps lm-eval's own tokenization (context encoded alone,
continuation = the joint encoding's remaining tokens, trailing context spaces moved to the
continuation, left truncation to the model's length) and returns, in request order, the same
(log-prob, is_greedy) pairs; ``is_greedy`` comes from the LM head pass without full logits.
``loglikelihood_rolling`` and ``generate_until`` are the HF backend's own.

``model_args``: everything the HF backend takes (``pretrained`` may also be one of invscale's
built-in names or a ``.gguf`` file), plus ``attention``, ``kernels``, ``max_tokens_per_pack`` and
``path`` (trie, cache or auto: a model the trie cannot serve takes the cache path, the model's own
forward and cache) as for ``invscale score``. Importing this module registers the model; ``invscale lm-eval ARGS`` runs
lm-eval's command line with it registered (lazily: see :mod:`invscale.integrations.lm_eval_command`).
"""

from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from invscale.data import check_text
from invscale.messages import first_line
from invscale.scoring.architectures import UnsupportedModel, check_causal_lm
from invscale.scoring.paths import check_path
from invscale.scoring.scorer import score_token_sequences


@register_model("invscale")
class InvscaleLM(HFLM):
    """lm-eval's HF model, with ``loglikelihood`` computed on a packed trie."""

    def __init__(self, pretrained, attention: str = "auto", kernels: str = "auto",
                 max_tokens_per_pack: int | None = None, path: str = "auto", **kwargs):
        if isinstance(pretrained, str) and "gguf_file" not in kwargs:
            from invscale.models import _model_source

            pretrained, gguf_file = _model_source(pretrained)
            if gguf_file is not None:
                kwargs["gguf_file"] = gguf_file
        try:
            super().__init__(pretrained=pretrained, **kwargs)
        except Exception as exc:  # the hub client, transformers and safetensors raise many kinds
            raise ValueError(f"--model invscale: cannot load pretrained={pretrained}: {first_line(exc)}") from None
        try:
            check_causal_lm(self.model.config)
            check_path(path)
        except (UnsupportedModel, ValueError) as exc:
            raise ValueError(f"--model invscale: {exc}") from None
        self.invscale_options = {"backend": attention, "kernels": kernels, "path": path,
                                 "max_tokens_per_pack": int(max_tokens_per_pack) if max_tokens_per_pack else None}

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """lm-eval's ``loglikelihood``, after every request's text passed :func:`invscale.data.check_text`."""
        for number, request in enumerate(requests):
            where = f"lm-eval request {number} ({getattr(request, 'task_name', None)}, doc {getattr(request, 'doc_id', None)})"
            for part, text in zip(("context", "continuation"), request.args):
                check_text(f"{where}: {part}", text)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """(log-prob, is_greedy) per (request, context tokens, continuation tokens), in order."""
        sequences = []
        for _, context, continuation in requests:
            joint = (list(context) + list(continuation))[-(self.max_length + 1):]  # left truncation, as lm-eval's
            sequences.append((tuple(joint), len(continuation)))
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood requests")
        logprobs, greedy = score_token_sequences(self.model, sequences, on_pack=bar.update, **self.invscale_options)
        bar.close()
        answers = list(zip(logprobs, greedy))
        for (request, _, _), answer in zip(requests, answers):
            if request is not None:
                self.cache_hook.add_partial("loglikelihood", request, answer)
        return answers


PRIZE_TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    {split}: {path}
{split}_split: {split}
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{classes}}}}"
doc_to_target: "{{{{answer_index}}}}"
target_delimiter: ""
metric_list:
{metrics}
"""


def prize_task_yaml(name: str, path, split: str = "test", metrics: tuple[str, ...] = ("acc",)) -> str:
    """An lm-eval task definition over a prize-format JSONL file (prompt, classes, answer_index),
    scoring exactly prompt + class as the prize pipeline does (``target_delimiter: ""``)."""
    listed = "\n".join(f"  - metric: {metric}" for metric in metrics)
    return PRIZE_TASK_YAML.format(name=name, path=path, split=split, metrics=listed)
