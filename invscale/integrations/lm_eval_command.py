"""``invscale lm-eval``: lm-evaluation-harness's command line with ``--model invscale`` registered
lazily (by the path of its class), so the command starts as quickly as ``lm_eval`` does: the
model's module, with torch and transformers, is imported only when lm-eval builds the model."""

from __future__ import annotations

import sys

MODEL_NAME = "invscale"
MODEL_CLASS = "invscale.integrations.lm_eval:InvscaleLM"


def main(arguments: list[str]) -> None:
    """lm-eval's command line with the invscale model registered (``invscale lm-eval ...``)."""
    import lm_eval.models  # noqa: F401  (lm-eval's own models, registered by their paths)
    from lm_eval.__main__ import cli_evaluate
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_CLASS)
    sys.argv = ["lm_eval", *arguments]
    cli_evaluate()
