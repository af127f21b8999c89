"""Pack token sequences into tries so each unique token is computed once.

A *pack* is one flat sequence of trie nodes in depth-first order. Node ``k`` is visible to
node ``q`` iff ``k <= q < subtree_end[k]`` (``k`` is ``q`` or one of its ancestors), and each node's
position id is its depth. The *preface* is a token prefix every sequence of a dataset shares
(BOS, shared instructions, worked examples); it is computed once per dataset and every pack
attends to its cached keys and values, so pack positions start at the preface length. Sequences
here hold their tokens after the preface. A target whose predicting token lies inside the preface
is read from the preface's own last hidden states: its pair node is negative, counted from the
preface's end (-1 is the preface's last token).

Packs are built from *units*: a context's *stem* (its tokens shared by all its continuations)
and the small trie of its continuations' own tokens below the stem, a :class:`Template`. Units come
in the order of their contexts' text, so each stem shares a prefix with the one before it; a unit
costs its stem's tokens after that prefix plus its template. Templates repeat (every prompt ending
in ``"\\nAnswer:"`` with options A-D has the same one), so they are built once and cached, and a
pack is assembled with array operations over its units: the host work grows with the unique
tokens, never with the naive ones.

A sequence's last token is computed only when something reads it (another sequence extends it, or
it predicts a target): with one-token options such as " A", that is one node per option saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

import numpy as np

_TEMPLATE_CACHE_LIMIT = 100_000
_STEM = attrgetter("stem")


def common_prefix(sequences) -> tuple[int, ...]:
    """The tokens every one of ``sequences`` (token tuples) starts with; () for none."""
    sequences = iter(sequences)
    prefix = next(sequences, ())
    for tokens in sequences:
        prefix = prefix[:common_prefix_length(prefix, tokens)]
    return prefix


def common_prefix_length(a: tuple[int, ...], b: tuple[int, ...], known: int = 0) -> int:
    """Length of the longest common prefix of two token tuples, of which the first ``known``
    tokens are known to be equal."""
    high = min(len(a), len(b))
    low = min(known, high)
    near = min(low + 8, high)
    while low < near and a[low] == b[low]:  # the usual case: they part within a few tokens
        low += 1
    if low < near or low == high:
        return low
    if a[low:high] == b[low:high]:
        return high
    while low < high:  # binary search on slice equality: each comparison runs in C
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class SequenceRef:
    """A sequence to pack: its id (for the caller), its tokens after the preface and how many of
    the whole sequence's last tokens are scored."""

    seq_id: int
    tokens: tuple[int, ...]
    n_target: int


@dataclass(frozen=True)
class Template:
    """The trie of a context's continuations below its stem, in depth-first order, with the nodes
    nothing reads left out.

    tokens, depth (0: a child of the stem's last token), end (subtree end, counted from the
    template's first node; the template's size for nodes open to its end).
    ``lengths``: each continuation's tokens below the stem, in the order given.
    Targets, continuation by continuation in that order (``n_targets`` of each), each with its
    predicting position ``pair_position`` (relative to the start of the continuation's own tokens:
    -1 is the stem's last token, lower reaches into the stem or preface), the node that is
    (``pair_node``, relative; -1 when the position is above the template) and the target token
    (``pair_target``; -1 when the target itself lies above, at ``pair_position + 1``).
    """

    tokens: tuple[int, ...]
    depth: tuple[int, ...]
    end: tuple[int, ...]
    pair_position: tuple[int, ...]
    pair_node: tuple[int, ...]
    pair_target: tuple[int, ...]
    n_targets: tuple[int, ...]
    lengths: tuple[int, ...]
    size: int  # nodes

    @property
    def reaches_up(self) -> bool:
        """Whether a target or its predictor lies above the stem's last token."""
        return min(self.pair_position, default=0) < -1


_templates: dict[tuple, Template] = {}


def template(junctions: tuple[tuple[tuple[int, ...], int], ...]) -> Template:
    """The :class:`Template` of continuations given as (their tokens below the stem, how many of
    the sequence's last tokens are scored), built once per distinct tuple."""
    found = _templates.get(junctions)
    if found is None:
        if len(_templates) > _TEMPLATE_CACHE_LIMIT:
            _templates.clear()
        found = _templates[junctions] = _chain(*junctions[0]) if len(junctions) == 1 else _tree(junctions)
    return found


def _chain(tokens: tuple[int, ...], n_target: int) -> Template:
    """One continuation: a chain whose last token is read by nothing."""
    length = len(tokens)
    positions = tuple(range(length - n_target - 1, length - 1))
    return Template(tokens=tokens[:length - 1], depth=tuple(range(length - 1)), end=(length - 1,) * (length - 1),
                    pair_position=positions, pair_node=tuple(p if p >= 0 else -1 for p in positions),
                    pair_target=tuple(tokens[p + 1] if p + 1 >= 0 else -1 for p in positions),
                    n_targets=(n_target,), lengths=(length,), size=max(length - 1, 0))


def _tree(junctions: tuple[tuple[tuple[int, ...], int], ...]) -> Template:
    """Several continuations: a trie built in sorted order, then its unread leaves dropped."""
    tokens, depth, end, path, previous = [], [], [], [], ()
    reads: dict[int, list[int]] = {}
    for number in sorted(range(len(junctions)), key=lambda j: junctions[j][0]):
        sequence, n_target = junctions[number]
        shared = common_prefix_length(previous, sequence) if previous else 0
        for node in path[shared:]:
            end[node] = len(tokens)
        del path[shared:]
        for position in range(shared, len(sequence)):
            path.append(len(tokens))
            tokens.append(sequence[position])
            depth.append(position)
            end.append(None)
        reads[number] = [path[p] if p >= 0 else -1 for p in range(len(sequence) - n_target - 1, len(sequence) - 1)]
        previous = sequence
    for node in path:
        end[node] = len(tokens)
    read = {node for nodes in reads.values() for node in nodes if node >= 0}
    keep = [end[node] != node + 1 or node in read for node in range(len(tokens))]
    kept_before = [0, *np.cumsum(keep).tolist()]
    positions, targets = [], []
    for sequence, n_target in junctions:
        start = len(sequence) - n_target - 1
        positions.extend(range(start, start + n_target))
        targets.extend(sequence[p + 1] if p + 1 >= 0 else -1 for p in range(start, start + n_target))
    nodes = [kept_before[node] if node >= 0 else -1 for number in range(len(junctions)) for node in reads[number]]
    kept = tuple(t for t, k in zip(tokens, keep) if k)
    return Template(tokens=kept, depth=tuple(d for d, k in zip(depth, keep) if k), size=len(kept),
                    end=tuple(kept_before[e] for e, k in zip(end, keep) if k), pair_position=tuple(positions),
                    pair_node=tuple(nodes), pair_target=tuple(targets),
                    n_targets=tuple(n for _, n in junctions), lengths=tuple(len(j) for j, _ in junctions))


@dataclass
class Unit:
    """A context to pack: its stem (tokens after the preface that all its sequences share), how many
    of the stem's first tokens are known to equal the previous unit's stem (a hint; 0 when unknown),
    its template and the id of each of its sequences (in the template's continuation order)."""

    stem: tuple[int, ...]
    hint: int
    template: Template
    seq_ids: list[int]


@dataclass
class Pack:
    """One packed trie.

    tokens, depth, subtree_end: [N] per node in DFS order.
    pair_node, pair_target: [T] the unique (predicting node, target token) pairs to score; a
    negative node is a preface position counted from the preface's end.
    seq_ids: [S] the sequences in this pack; the targets of sequence ``i`` are
    ``target_pair[seq_offsets[i]:seq_offsets[i + 1]]`` (indices into the pairs), in order.
    stack: the segments of shared prefix (token tuples) between the preface and this pack's nodes,
    whose keys and values the runner holds (see :func:`build_packs`); depths and negative pair
    nodes count from the end of the preface and the stack.
    """

    tokens: np.ndarray
    depth: np.ndarray
    subtree_end: np.ndarray
    pair_node: np.ndarray
    pair_target: np.ndarray
    seq_ids: np.ndarray
    target_pair: np.ndarray
    seq_offsets: np.ndarray
    stack: tuple[tuple[int, ...], ...] = ()

    @property
    def n_tokens(self) -> int:
        """Unique tokens computed for this pack."""
        return int(self.tokens.shape[0])

    def sequence_sums(self, pair_values: np.ndarray) -> np.ndarray:
        """[S] each sequence's sum of ``pair_values`` ([T]) over its targets."""
        return np.add.reduceat(pair_values[self.target_pair], self.seq_offsets[:-1])

    def sequence_all(self, pair_flags: np.ndarray) -> np.ndarray:
        """[S] whether ``pair_flags`` ([T] bool) holds for every target of each sequence."""
        return np.logical_and.reduceat(pair_flags[self.target_pair], self.seq_offsets[:-1])


def _array(values, count: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=count)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``range(start, start + length)`` for each pair, as one array."""
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)


class _Table:
    """The distinct templates of a pack, their fields concatenated: ``field(name)`` gathers the named
    field of template ``which[i]`` for each unit ``i``, in order."""

    def __init__(self, templates: list[Template]):
        number_of: dict[int, int] = {}
        self.distinct: list[Template] = []
        for t in templates:
            if id(t) not in number_of:
                number_of[id(t)] = len(self.distinct)
                self.distinct.append(t)
        self.which = np.fromiter(map(number_of.__getitem__, map(id, templates)), dtype=np.int64, count=len(templates))
        self._gathers: dict[bytes, np.ndarray] = {}  # a field's per-template sizes -> where each unit's values lie

    def lengths(self, name: str) -> np.ndarray:
        """[units] the length of each unit's template's field ``name``."""
        per_template = np.array([len(getattr(t, name)) for t in self.distinct], dtype=np.int64)
        return per_template[self.which]

    def field(self, name: str) -> np.ndarray:
        """The field ``name`` of each unit's template, concatenated in unit order."""
        values = [getattr(t, name) for t in self.distinct]
        sizes = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        flat = _array(chain.from_iterable(values), int(sizes.sum()))
        gather = self._gathers.get(sizes.tobytes())
        if gather is None:  # fields of one kind (per node, per target, per continuation) share it
            starts = np.cumsum(sizes) - sizes
            gather = self._gathers[sizes.tobytes()] = _ranges(starts[self.which], sizes[self.which])
        return flat[gather]


def _assemble(units: list[Unit], shared: list[int], preface: tuple[int, ...],
              stack: tuple[tuple[int, ...], ...] = ()) -> Pack:
    """The pack of ``units`` in order, each sharing ``shared[i]`` stem tokens with the one before
    (the first: the ``stack``'s tokens, which every stem starts with): each unit's new stem tokens,
    then its template."""
    base = sum(map(len, stack))
    above = len(preface) + base  # tokens before the pack's nodes
    table = _Table([unit.template for unit in units])
    sizes = table.lengths("tokens")
    stems = [unit.stem for unit in units]
    stem_lengths = np.fromiter(map(len, stems), dtype=np.int64, count=len(units)) - base
    common = np.array(shared, dtype=np.int64) - base
    common[0] = 0
    new = stem_lengths - common
    starts = np.cumsum(new + sizes) - (new + sizes)  # each unit's first node
    bases = starts + new  # each unit's first template node
    count = int((new + sizes).sum())
    in_template = np.repeat(np.tile(np.array([False, True]), len(units)), np.stack([new, sizes], axis=1).reshape(-1))
    # the stem's nodes: a node ends where a later unit leaves its depth (the path is the current stem)
    path: list[int] = []
    popped, stem_last, reaching = [], [], []
    upward = [t.reaches_up for t in table.distinct]
    for number, (stem_common, start, length, kind) in enumerate(zip(common.tolist(), starts.tolist(), new.tolist(),
                                                                    table.which.tolist())):
        popped.append(path[stem_common:])
        del path[stem_common:]
        path.extend(range(start, start + length))
        stem_last.append(path[-1] if path else -1)
        if upward[kind]:  # (rare) targets above the stem's last token: its whole path is needed
            reaching.append((number, path.copy()))
    popped.append(path)
    tokens = np.empty(count, dtype=np.int64)
    depth = np.empty(count, dtype=np.int64)
    subtree_end = np.empty(count, dtype=np.int64)
    n_new = int(new.sum())
    tokens[~in_template] = _array(chain.from_iterable(stem[c:] for stem, c in zip(stems, (common + base).tolist())),
                                  n_new)
    depth[~in_template] = _ranges(common, new)
    subtree_end[_array(chain.from_iterable(popped), n_new)] = np.repeat(
        np.append(starts, count), np.fromiter(map(len, popped), dtype=np.int64, count=len(popped)))
    tokens[in_template] = table.field("tokens")
    depth[in_template] = table.field("depth") + np.repeat(stem_lengths, sizes)
    subtree_end[in_template] = table.field("end") + np.repeat(bases, sizes)
    # answer pairs: template nodes, the stem's last token, or (rarely) deeper in the stem or preface
    n_pairs = table.lengths("pair_node")
    position = table.field("pair_position")
    pair_node = np.where(position >= 0, table.field("pair_node") + np.repeat(bases, n_pairs),
                         np.repeat(np.array(stem_last, dtype=np.int64), n_pairs))
    pair_target = table.field("pair_target")
    if reaching:
        _resolve_upward(units, reaching, preface, base, (np.cumsum(n_pairs) - n_pairs).tolist(), pair_node,
                        pair_target)
    keys = (pair_node + above) * (1 << 32) + pair_target
    unique, inverse = np.unique(keys, return_inverse=True)
    n_targets = table.field("n_targets")
    offsets = np.zeros(len(n_targets) + 1, dtype=np.int64)
    np.cumsum(n_targets, out=offsets[1:])
    return Pack(tokens=tokens, depth=depth, subtree_end=subtree_end, pair_node=unique // (1 << 32) - above,
                pair_target=unique % (1 << 32),
                seq_ids=_array(chain.from_iterable(u.seq_ids for u in units), len(n_targets)),
                target_pair=inverse.reshape(-1), seq_offsets=offsets, stack=stack)


def _resolve_upward(units, reaching, preface, base, first_pairs, pair_node, pair_target) -> None:
    """Pairs whose predictor or target lies above the stem's last token: found along the stem's
    path (or in the preface and the stack's ``base`` tokens, counted from their end), for each
    (unit number, stem path) of ``reaching``; ``first_pairs[i]`` is unit ``i``'s first pair."""
    for number, path in reaching:
        unit, first = units[number], first_pairs[number]
        above = preface + unit.stem
        for offset, position in enumerate(unit.template.pair_position):
            depth = len(unit.stem) - base + position  # the predictor's depth below the preface and stack
            if position < -1:
                pair_node[first + offset] = path[depth] if depth >= 0 else depth
            if position + 1 < 0:
                pair_target[first + offset] = above[len(preface) + base + depth + 1]


def stem_shared(units: list[Unit]) -> list[int]:
    """For each unit, the stem tokens it shares with the unit before it (0 for the first)."""
    shared = [0] * len(units)
    for index in range(1, len(units)):
        unit = units[index]
        shared[index] = common_prefix_length(units[index - 1].stem, unit.stem, unit.hint)
    return shared


@dataclass
class StackPlan:
    """How a run's packs use the stack of shared prefixes, counted over every :func:`build_packs`
    call it is given to: ``budget_tokens`` (None: no limit) bounds the tokens held on the stack,
    whose keys and values the runner keeps; a shared prefix that would take the stack past it is
    computed in each of its packs instead (``refused`` prefixes, ``refused_tokens`` in all), and so
    are the prefixes below it. ``fewest_tokens``: the distinct prefixes of the units packed (the
    tokens a run computing each prefix once needs), the preface apart."""

    budget_tokens: int | None = None
    refused: int = 0
    refused_tokens: int = 0
    fewest_tokens: int = 0

    def allows(self, tokens: int) -> bool:
        """Whether a stack of ``tokens`` tokens is within the budget."""
        return self.budget_tokens is None or tokens <= self.budget_tokens


def build_packs(units: list[Unit], max_tokens: int, preface: tuple[int, ...] = (),
                keep_last: bool = False, stacks: bool = False,
                plan: StackPlan | None = None) -> tuple[list[Pack], list[Unit]]:
    """Pack ``units`` in order into packs of at most ``max_tokens`` unique tokens (a unit larger than
    that gets a pack of its own). With ``keep_last`` the units at the end that may share a prefix
    with the next ones (the last pack's, or with ``stacks`` the last run of units sharing a prefix,
    when it is small) are not packed but handed back, to be packed again with the next ones.

    Without ``stacks`` packs are filled greedily and a prefix shared across packs is computed in
    each of them. With ``stacks`` the packing follows the tree of shared prefixes: a prefix shared
    by more units than fit one pack is a segment on their packs' stack, computed once while the
    runner holds its keys and values for every pack below it (:func:`_stacked_groups`), within
    ``plan``'s budget; ``plan`` also counts the distinct prefixes of the units packed."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    shared = stem_shared(units)
    if not stacks:
        return _greedy_packs(units, shared, max_tokens, preface, keep_last)
    held: list[Unit] = []
    if keep_last and units:
        last = max(i for i, common in enumerate(shared) if i == 0 or common == 0)
        tail = sum(len(u.stem) - common + u.template.size for u, common in zip(units[last:], [0, *shared[last + 1:]]))
        if tail <= 4 * max_tokens:
            units, held, shared = units[:last], units[last:], shared[:last]
    if not units:
        return [], held
    plan = plan if plan is not None else StackPlan()
    return [_assemble(units[lo:hi], [0, *shared[lo + 1:hi]], preface, stack)
            for lo, hi, stack in _stacked_groups(units, shared, max_tokens, plan)], held


def _greedy_packs(units: list[Unit], shared: list[int], max_tokens: int, preface: tuple[int, ...],
                  keep_last: bool) -> tuple[list[Pack], list[Unit]]:
    """Units packed greedily in order, each pack computing its stems whole (no stack)."""
    groups, current, used = [], [], 0
    for index, (unit, common) in enumerate(zip(units, shared)):
        cost = len(unit.stem) - common + unit.template.size
        if current and used + cost > max_tokens:
            groups.append(current)
            current, used, cost = [], 0, len(unit.stem) + unit.template.size
        current.append(index)
        used += cost
    if current:
        groups.append(current)
    held = []
    if keep_last and groups:
        held = [units[i] for i in groups.pop()]
    packs = [_assemble([units[i] for i in group], [0] + [shared[i] for i in group[1:]], preface) for group in groups]
    return packs, held


def _stacked_groups(units: list[Unit], shared: list[int], max_tokens: int, plan: StackPlan):
    """(lo, hi, stack) of each pack of ``units``, in depth-first order.

    The units (in stem order, ``shared[i]`` stem tokens shared with unit ``i - 1``) form a tree of
    shared prefixes. A node whose units fit one pack (beyond the ``base`` tokens already on the
    stack) is one pack; otherwise the prefix all its units share beyond ``base`` becomes a segment
    pushed on the stack, and its children (the runs of units parting exactly there) are packed
    below it: consecutive small children together, large ones recursively. Every pack of a node
    sees the same segments, so each shared prefix is computed once per run, unless pushing it
    would take the stack past ``plan``'s budget: then the node's children are packed as they are,
    each pack computing the prefix itself."""
    n = len(units)
    stem_length = np.fromiter(map(len, map(_STEM, units)), dtype=np.int64, count=n)
    size_of = np.fromiter((unit.template.size for unit in units), dtype=np.int64, count=n)
    common = np.array(shared, dtype=np.int64)
    common[0] = 0
    total = np.concatenate([[0], np.cumsum(stem_length - common + size_of)])

    def size(lo: int, hi: int, base: int) -> int:  # the trie of units[lo:hi] beyond ``base`` tokens
        return int(total[hi] - total[lo + 1] + stem_length[lo] - base + size_of[lo])

    plan.fewest_tokens += int(total[n])
    groups, work = [], [(True, 0, n, 0, ())]
    while work:
        is_node, lo, hi, base, stack = work.pop()
        if not is_node or size(lo, hi, base) <= max_tokens or (hi - lo == 1 and stem_length[lo] == base):
            groups.append((lo, hi, stack))
            continue
        deepest = int(common[lo + 1:hi].min()) if hi - lo > 1 else int(stem_length[lo])
        if deepest > base:  # what every unit here shares: one segment on the stack, if the budget allows
            if plan.allows(deepest):  # the stack holds ``base`` tokens; with this segment, ``deepest``
                work.append((True, lo, hi, deepest, stack + (units[lo].stem[base:deepest],)))
                continue
            plan.refused += 1
            plan.refused_tokens += deepest - base
            if hi - lo == 1:
                groups.append((lo, hi, stack))
                continue
        cuts = [lo, *(lo + 1 + np.flatnonzero(common[lo + 1:hi] == deepest)).tolist(), hi]
        tasks, pending = [], None
        for a, b in zip(cuts, cuts[1:]):
            if size(a, b, base) > max_tokens:
                if pending is not None:
                    tasks.append((False, pending, a, base, stack))
                    pending = None
                tasks.append((True, a, b, base, stack))
            elif pending is None:
                pending = a
            elif size(pending, b, base) > max_tokens:
                tasks.append((False, pending, a, base, stack))
                pending = a
        if pending is not None:
            tasks.append((False, pending, hi, base, stack))
        work.extend(reversed(tasks))
    return groups


def shared_segments(held, stack) -> int:
    """How many leading segments two stacks have in common (compared by identity, then by value)."""
    keep = 0
    while keep < min(len(held), len(stack)) and (held[keep] is stack[keep] or held[keep] == stack[keep]):
        keep += 1
    return keep


def push_passes(segment: tuple[int, ...], push_tokens: int | None) -> list[tuple[int, ...]]:
    """The passes a runner pushes ``segment`` on the stack in: consecutive pieces of at most
    ``push_tokens`` tokens (None: the whole segment at once)."""
    step = push_tokens or len(segment)
    return [segment[start:start + step] for start in range(0, len(segment), step)]


def stack_growth(held: tuple[tuple[int, ...], ...], stack: tuple[tuple[int, ...], ...]) -> int:
    """Tokens a runner holding the segments ``held`` computes to hold ``stack`` instead."""
    return sum(map(len, stack[shared_segments(held, stack):]))


def tokens_computed(packs) -> int:
    """Tokens one runner computes for ``packs`` run in order, the segments of their stacks included
    (the preface not)."""
    total, held = 0, ()
    for pack in packs:
        total += pack.n_tokens + stack_growth(held, pack.stack)
        held = pack.stack
    return total


def units_of_sequences(sequences: list[SequenceRef]) -> list[Unit]:
    """Units for token sequences given whole (after the preface): sequences with the same tokens
    before their targets share a stem; units in stem order."""
    by_stem: dict[tuple[int, ...], list[SequenceRef]] = {}
    for sequence in sequences:
        cut = max(len(sequence.tokens) - sequence.n_target, 0)
        by_stem.setdefault(sequence.tokens[:cut], []).append(sequence)
    units = []
    for stem in sorted(by_stem):
        group = by_stem[stem]
        junctions = tuple((s.tokens[len(stem):], s.n_target) for s in group)
        units.append(Unit(stem, 0, template(junctions), [s.seq_id for s in group]))
    return units


def build_pack(sequences: list[SequenceRef], preface: tuple[int, ...] = ()) -> Pack:
    """The one pack of ``sequences`` (tokens after ``preface``), however many tokens it holds."""
    units = units_of_sequences(sequences)
    return _assemble(units, stem_shared(units), preface)
