"""Instruct models: each row's prompt wrapped in the model's chat template, the classes left as
they are (they follow the opened assistant turn, as the model's own answer would)."""

from __future__ import annotations

from dataclasses import replace

from invscale.data import Dataset, check_text


class NoChatTemplate(ValueError):
    """The tokenizer has no chat template to apply."""


def chat_prompt(tokenizer, text: str) -> str:
    """``text`` as one user turn with the assistant's turn opened, in ``tokenizer``'s template; a
    BOS the template writes is left out when the tokenizer adds its own (so there is one)."""
    templated = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                              add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and templated.startswith(bos) and _adds_bos(tokenizer):
        templated = templated[len(bos):]
    return check_text("--chat-template: the template's output", templated)


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id and ids != tokenizer("a", add_special_tokens=False)["input_ids"]


def require_chat_template(tokenizer) -> None:
    """:class:`NoChatTemplate` if ``tokenizer`` has no chat template (checked before any weights load)."""
    if not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplate("--chat-template: the model's tokenizer has no chat template (it is not an instruct "
                             "model, or its files lack one)")


def apply_chat_template(dataset: Dataset, tokenizer) -> Dataset:
    """A copy of ``dataset`` whose prompts (and other prompts) are wrapped by :func:`chat_prompt`;
    :class:`NoChatTemplate` if the tokenizer has none."""
    require_chat_template(tokenizer)
    rows = [replace(row, prompt=chat_prompt(tokenizer, row.prompt),
                    other_prompt=None if row.other_prompt is None else chat_prompt(tokenizer, row.other_prompt))
            for row in dataset.rows]
    return replace(dataset, rows=rows)
