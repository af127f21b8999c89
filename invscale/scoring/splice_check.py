"""Which of a dataset's pairs to tokenize whole before any work, as a check on the splice.

The splice is exact by its argument (:mod:`invscale.scoring.boundary`); this is a cheap second
line, in case a tokenizer does something the argument did not foresee. A run checks a seeded
sample of its pairs and, on top, pairs whose junction looks like the places tokenizers are subtle
(a whitespace run, whitespace meeting whitespace across the junction, an added token's first
character), each replayed as the run tokenizes it: after the context before it in its chunk's
text order. The scorer refuses the run, naming the row, if any differs.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_left, bisect_right
from itertools import accumulate, chain

SAMPLED = 64  # pairs drawn at random
FLAGGED = 256  # pairs with a risky-looking junction, at most (drawn among them when there are more)
_TAIL = 32  # characters of a context's end looked at


def chosen_checks(item_contexts: list[tuple[str, ...]], item_continuations: list[tuple[str, ...]], chunk_rows: int,
                  added_firsts: str, seed: int = 0) -> list[tuple[int, str | None, str, str]]:
    """(item number, neighbour, context, continuation) of the pairs to check, ``added_firsts`` being
    the first characters of the tokenizer's added tokens."""
    generator = random.Random(seed)
    counts = list(accumulate((len(c) * len(k) for c, k in zip(item_contexts, item_continuations)), initial=0))
    chosen = set()
    for pick in generator.sample(range(counts[-1]), min(counts[-1], SAMPLED)):
        number = bisect_right(counts, pick) - 1
        contexts, continuations = item_contexts[number], item_continuations[number]
        context, continuation = divmod(pick - counts[number], len(continuations))
        chosen.add((number, contexts[context], continuations[continuation]))
    flagged = _flagged(item_contexts, item_continuations, added_firsts)
    chosen.update(generator.sample(flagged, FLAGGED) if len(flagged) > FLAGGED else flagged)
    ordered: dict[int, list[str]] = {}
    checks = []
    for number, context, continuation in sorted(chosen):
        chunk = number // chunk_rows
        if chunk not in ordered:
            ordered[chunk] = sorted(set(chain.from_iterable(item_contexts[chunk * chunk_rows:(chunk + 1) * chunk_rows])))
        place = bisect_left(ordered[chunk], context)
        checks.append((number, ordered[chunk][place - 1] if place else None, context, continuation))
    return checks


def _flagged(item_contexts, item_continuations, added_firsts: str) -> list[tuple[int, str, str]]:
    """Pairs whose junction has a whitespace run, whitespace on both sides, or an added token's first
    character; one per distinct (context end, continuation)."""
    risky = re.compile(r"\s\s" + (f"|[{re.escape(added_firsts)}]" if added_firsts else "")).search
    risk_of: dict[tuple[str, ...], tuple[bool, bool]] = {}  # continuations: any risky, any starting with space
    found, seen = [], set()
    for number, (contexts, continuations) in enumerate(zip(item_contexts, item_continuations)):
        risk = risk_of.get(continuations)
        if risk is None:
            risk = risk_of[continuations] = (any(risky(k) for k in continuations),
                                             any(k[:1].isspace() for k in continuations))
        for context in contexts:
            tail = context[-_TAIL:]
            if risk[0] or risky(tail) or (risk[1] and tail[-1:].isspace()):
                for continuation in continuations:
                    if (tail, continuation) not in seen:
                        seen.add((tail, continuation))
                        found.append((number, context, continuation))
    return found
