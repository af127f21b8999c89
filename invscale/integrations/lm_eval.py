"""invscale as an lm-evaluation-harness model: ``--model invscale``.

lm-eval's HF backend runs each (context, continuation) request as its own padded sequence. This
model is that backend with one change: ``loglikelihood`` sends all of a run's requests through the
trie scorer (or, for a model the trie cannot serve, the cache path) at once, so contexts that repeat across requests (few-shot examples, a question with
several options) are computed once. It keeps lm-eval's own tokenization (context encoded alone,
continuation = the joint encoding's remaining tokens, trailing context spaces moved to the
continuation, left truncation to the model's length) and returns, in request order, the same
(log-prob, is_greedy) pairs; ``is_greedy`` comes from the LM head pass without full logits.
``generate_until`` runs invscale's decoder (:mod:`invscale.decoding`): the contexts' shared
preface (the few-shot examples) is computed once and every request continues from a copy of its
cache, ragged contexts batched where the model is proved to take them padded, a finished request
leaving the batch at once; greedy, or sampled with ``temperature``/``top_p``/``top_k``, each
request drawing from its own seed (``model_args`` ``seed``), at most ``generation_batch_size``
requests together (16, the fastest of 8, 16, 32 and 48 measured on a 2-core CPU; lm-eval's
``--batch_size`` is the HF backend's and is not used). Its tokens are the HF backend's (the same encoding and left truncation) and its text is cut at the stop
sequences as the HF backend cuts it.
``loglikelihood_rolling`` is the HF backend's own.

``model_args``: everything the HF backend takes (``pretrained`` may also be one of invscale's
built-in names or a ``.gguf`` file), plus ``attention``, ``kernels``, ``max_tokens_per_pack`` and
``path`` (trie, cache or auto: a model the trie cannot serve takes the cache path, the model's own
forward and cache) as for ``invscale score``. Importing this module registers the model; ``invscale lm-eval ARGS`` runs
lm-eval's command line with it registered (lazily: see :mod:`invscale.integrations.lm_eval_command`).
"""

from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM, handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from invscale.data import check_text
from invscale.decoding import Decoder, DecodingSettings
from invscale.messages import first_line
from invscale.scoring.architectures import UnsupportedModel, check_causal_lm
from invscale.scoring.paths import check_path
from invscale.scoring.scorer import score_token_sequences


@register_model("invscale")
class InvscaleLM(HFLM):
    """lm-eval's HF model, with ``loglikelihood`` computed on a packed trie."""

    def __init__(self, pretrained, attention: str = "auto", kernels: str = "auto",
                 max_tokens_per_pack: int | None = None, path: str = "auto", seed: int = 0,
                 generation_batch_size: int = 16, **kwargs):
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
        self.sampling_seed, self.generation_batch_size = int(seed), int(generation_batch_size)

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


    def generate_until(self, requests, disable_tqdm: bool = False):
        """lm-eval's ``generate_until``: each request's text, generated by invscale's decoder (see
        the module's docstring), in request order."""
        groups: dict[str, list[int]] = {}
        for number, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(number)
        answers: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running generate_until requests")
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        think = self.think_end_token if isinstance(self.think_end_token, str) else None
        with Decoder(self.model, self.tokenizer) as decoder:
            for numbers in groups.values():
                gen_kwargs = requests[numbers[0]].args[1]
                settings, until, room = self._decoding(gen_kwargs, eos)
                contexts = [tuple(self.tok_batch_encode([requests[n].args[0]], left_truncate_len=room,
                                                        truncation=self.truncation)[0][0].tolist()) for n in numbers]
                decoder.share_preface(contexts)
                written = decoder.generate(contexts, settings, rows=numbers, batch_size=self.generation_batch_size)
                for number, (generation,) in zip(numbers, written):
                    text = postprocess_generated_text(self.tok_decode(list(generation.written)), until, think)
                    answers[number] = text
                    self.cache_hook.add_partial("generate_until", requests[number].args, text)
                    bar.update(1)
        bar.close()
        return answers

    def _decoding(self, gen_kwargs: dict, eos: str):
        """(decoding settings, stop sequences, room left for the context) of one request's
        ``gen_kwargs``; ValueError (one line) for a setting the decoder does not take."""
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_new_tokens = kwargs.pop("max_gen_toks")
        sampled = kwargs.pop("do_sample", False)
        temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
        top_p, top_k = float(kwargs.pop("top_p", 1.0) or 1.0), int(kwargs.pop("top_k", 0) or 0)
        if kwargs:
            raise ValueError(f"--model invscale: generate_until does not take {', '.join(sorted(kwargs))} "
                             "(it takes until, max_gen_toks, do_sample, temperature, top_p and top_k)")
        if not sampled or temperature == 0:
            temperature, top_p, top_k = 0.0, 1.0, 0
        settings = DecodingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                    seed=self.sampling_seed, stops=tuple(stop for stop in until if stop))
        return settings, until, self.max_length - max_new_tokens


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
