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
_TAIL = 24  # characters of a context's end looked at


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
    character; one per distinct (context end, continuation). The contexts' ends are searched in one
    pass over them all, joined."""
    risky = re.compile(r"\s\s" + (f"|[{re.escape(added_firsts)}]" if added_firsts else ""))
    flat = [(n, context) for n, contexts in enumerate(item_contexts) for context in contexts]
    tails = [context[-_TAIL:] for _, context in flat]
    starts = list(accumulate((len(tail) + 1 for tail in tails), initial=0))
    joined = "\x00".join(tails)
    risky_tails = {bisect_right(starts, m.start()) - 1 for m in risky.finditer(joined)}
    spaced_tails = {bisect_right(starts, m.start()) - 1 for m in re.finditer(r"\s(?=\x00|\Z)", joined)}
    continuation_sets = set(item_continuations)
    risky_sets = {ks for ks in continuation_sets if any(risky.search(k) for k in ks)}
    spaced_sets = {ks for ks in continuation_sets if any(k[:1].isspace() for k in ks)}
    candidates = risky_tails | {i for i in spaced_tails if item_continuations[flat[i][0]] in spaced_sets}
    if risky_sets:
        candidates |= {i for i, (n, _) in enumerate(flat) if item_continuations[n] in risky_sets}
    found, seen = [], set()
    for i in sorted(candidates):
        number, context = flat[i]
        for continuation in item_continuations[number]:
            if (tails[i], continuation) not in seen:
                seen.add((tails[i], continuation))
                found.append((number, context, continuation))
    return found
