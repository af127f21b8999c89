"""What a generation run writes: a token budget, greedy or sampled decoding, stop strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DecodingSettings:
    """``max_new_tokens`` per sample; ``temperature`` 0 is greedy, above 0 samples (after
    ``top_k`` (0: off) and ``top_p`` (1: off), in transformers' order: temperature, top-k, top-p);
    ``samples`` per prompt, each drawn from its own seed (see :mod:`invscale.decoding.sampling`);
    ``stops``: strings that end a sample where the decoded text first holds one (the text before
    it is kept); EOS ends one too unless ``stop_at_eos`` is off."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    samples: int = 1
    seed: int = 0
    stops: tuple[str, ...] = ()
    stop_at_eos: bool = True

    def __post_init__(self):
        object.__setattr__(self, "stops", tuple(self.stops))
        check(self)

    @property
    def greedy(self) -> bool:
        """Whether every token is the argmax (no randomness at all)."""
        return self.temperature == 0

    def describe(self) -> dict:
        """Every setting, for a results file's provenance."""
        return asdict(self) | {"stops": list(self.stops)}


def check(settings: DecodingSettings) -> None:
    """ValueError, in one line naming the option, for a setting that cannot be generated with."""
    if isinstance(settings.max_new_tokens, bool) or not isinstance(settings.max_new_tokens, int) \
            or settings.max_new_tokens < 0:
        raise ValueError(f"max new tokens: {settings.max_new_tokens!r}; give a whole number, 0 or more")
    if not settings.temperature >= 0:
        raise ValueError(f"temperature: {settings.temperature!r}; give 0 (greedy) or more")
    if not 0 < settings.top_p <= 1:
        raise ValueError(f"top-p: {settings.top_p!r}; give a number above 0, at most 1")
    if settings.top_k < 0:
        raise ValueError(f"top-k: {settings.top_k!r}; give 0 (off) or more")
    if settings.samples < 1:
        raise ValueError(f"samples: {settings.samples!r}; give 1 or more")
    if settings.greedy and settings.samples > 1:
        raise ValueError(f"samples: {settings.samples} greedy samples would all be the same; give a temperature "
                         "above 0 to sample")
    for stop in settings.stops:
        if not isinstance(stop, str) or not stop:
            raise ValueError(f"stop string {stop!r}: an empty stop string would end every sample before it began")
