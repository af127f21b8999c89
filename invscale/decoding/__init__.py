"""Text generation: token ids a causal LM writes after a context, greedy or sampled.

It sits beside scoring, on the same machinery (:mod:`invscale.scoring.cache_runner`: the model's
own forward over a cache of the run's shared preface, computed once), so every architecture that
can be scored can also generate. It produces token ids and their text; scoring them (a chain of
thought, then the classes) is composed in the API layer.

- :mod:`invscale.decoding.settings`: what to generate (budget, sampling, stop strings), checked.
- :mod:`invscale.decoding.sampling`: the next token of each sample, drawn from its own seed.
- :mod:`invscale.decoding.stops`: stop strings found in the decoded text across token boundaries.
- :mod:`invscale.decoding.decoder`: the loop, batched over prompts and samples.
"""

from invscale.decoding.decoder import Decoder, Generation
from invscale.decoding.settings import DecodingSettings

__all__ = ["Decoder", "DecodingSettings", "Generation"]
