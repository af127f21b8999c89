"""The one choice point between the two exact ways of computing option log-probs.

``trie``: each unique token once, on packed tries (:mod:`invscale.scoring.runner`), for the
architectures and features the conformance tests proved exact there
(:mod:`invscale.scoring.architectures`). ``cache``: the model's own forward and cache
(:mod:`invscale.scoring.cache_runner`), for every other causal LM. ``auto`` takes the trie where
it is exact for the run's longest sequence and the cache path otherwise; only what is not a causal
LM is refused, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

from invscale.scoring import architectures

PATHS = ("auto", "trie", "cache")


@dataclass(frozen=True)
class ScoringPath:
    """The path a run takes (``trie`` or ``cache``), why, and on the cache path the mode its probe
    measured (see :mod:`invscale.scoring.cache_runner`)."""

    name: str
    reason: str
    mode: str | None = None

    def describe(self) -> str:
        """One line: the path, its mode, and why."""
        mode = f" ({self.mode})" if self.mode else ""
        return f"{self.name}{mode}: {self.reason}"


def check_path(choice: str) -> str:
    """``choice`` if it is one of :data:`PATHS`, else ValueError in one line."""
    if choice not in PATHS:
        raise ValueError(f"--path {choice}: choose one of {', '.join(PATHS)}")
    return choice


def choose_path(config, requested: str = "auto", longest_sequence: int | None = None) -> ScoringPath:
    """The path for ``config`` on sequences of at most ``longest_sequence`` tokens (None: any).
    Raises :class:`~invscale.scoring.architectures.UnsupportedModel` (one line) for what is not a
    causal LM, and for ``trie`` where the trie is not exact."""
    check_path(requested)
    architectures.check_causal_lm(config)
    if requested == "cache":
        return ScoringPath("cache", "asked for (--path cache)")
    try:
        architectures.check_architecture(config, longest_sequence)
    except architectures.UnsupportedModel as exc:
        if requested == "trie":
            raise
        return ScoringPath("cache", str(exc))
    return ScoringPath("trie", "checked exact on the trie" if requested == "auto" else "asked for (--path trie)")


def sequence_limit(config, requested: str = "auto") -> int | None:
    """The longest sequence scored exactly: the model's positions, where a length-dependent rotary
    embedding changes (on every path), and, with ``trie``, the architecture's trie limits (an
    unchecked sliding window); None when nothing limits it."""
    limits = [getattr(config, "max_position_embeddings", None), architectures.length_dependent_rope_limit(config)]
    if requested == "trie":
        limits.append(architectures.length_limit(config))
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None
