"""Models through training: which checkpoints belong to one model, and at which step each is.

A checkpoint is named either as a hub model at a revision (``EleutherAI/pythia-410m@step3000``,
Pythia's ``stepN`` branches) or as a local folder whose name carries the step (``ckpt/step-1000``,
``run/checkpoint-2000``, the names trainers write). Checkpoints of one *lineage* (the hub model,
or the folder holding the step folders) are one model at several points of its training.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from invscale.models import split_revision

_STEP = re.compile(r"(?:step|checkpoint|ckpt|iter)[-_]?(\d+)$", re.IGNORECASE)


def training_step(name: str) -> int | None:
    """The training step a checkpoint's name gives: its revision's, else its folder's last part's."""
    base, revision = split_revision(name)
    found = _STEP.search(revision if revision is not None else PurePath(name.rstrip("/")).name)
    return int(found.group(1)) if found else None


def lineage(name: str) -> str:
    """The model a checkpoint belongs to: the hub model of a revision, the folder holding a step
    folder, else the name itself."""
    base, revision = split_revision(name)
    if revision is not None:
        return base
    path = PurePath(name.rstrip("/"))
    return str(path.parent) if training_step(name) is not None and str(path.parent) not in ("", ".") else name


def at_revisions(models: list[str], revisions: list[str]) -> list[str]:
    """Every model at every revision (``model@revision``), model by model."""
    return [f"{model}@{revision}" for model in models for revision in revisions]
