"""Where a text may be cut so that the tokens before the cut do not depend on what follows.

The splice (:mod:`invscale.scoring.splice`) keeps a text's tokens up to a cut ``c`` and tokenizes
only ``text[c:]`` joined to what follows (a continuation, or the rest of another text that shares
the first ``end`` characters). That is exact when the tokenizer's work before ``c`` never looks at
a character at or after ``end``, and ``c`` stays a pre-token boundary whatever follows. This module
derives, from the tokenizer's own description, the last ``c`` for which that holds.

The argument, for a BPE tokenizer (merges never cross a pre-token):

1. **Pre-tokenizer.** The first splitting stage is a scan: a regular expression (a ``Split``, or
   ``ByteLevel``'s GPT-2 pattern) tried at a position, its match taken, the scan going on from the
   match's end (a position where no match starts is searched past, making a gap); ``Metaspace``,
   ``Digits``, ``Punctuation`` and ``WhitespaceSplit`` are scans of a one-character pattern. The
   pattern is parsed into an automaton that follows *every* path the engine could try from a
   position, every alternative and every repetition count, and the characters every look-ahead
   reads (:class:`Reach`). A try at ``p`` can read position ``end`` only if some path consumes all
   of ``text[p:end]`` and is then still reading; scanning backwards from ``end`` with the reversed
   automaton finds the earliest such ``p`` (``open``), stopping as soon as no path is left, which
   for real patterns is within the last word or whitespace run. Unbounded look-ahead (``\\s*[\\r\\n]+``
   reaching to a whitespace run's last newline, as in Llama-3 and Qwen2) is followed as far as it
   goes, not assumed away. Every try before ``open`` is then decided by characters before
   ``end``, identically in any text sharing them, so every pre-token boundary before ``open`` (at
   ``open`` too when the pattern matches at every position, so that no gap can run past a cut; a
   pattern with gaps needs the try at the cut decided too) is a boundary there, with the same
   pre-tokens before it; and from a boundary on, the scan is the scan of the rest alone (the
   patterns accepted have no look-behind or anchors). Characters outside ASCII that the pattern
   does not name are taken to match every class (so the automaton over-approximates, never
   under-approximates, what is read). Later stages must not split (``ByteLevel`` without its
   regex), so the final boundaries are the scan's.
2. **Normalizer.** Only normalizers that map each character to one character (``Lowercase``,
   one-character ``Replace``) or Unicode normal forms of text already in that form are accepted;
   the scan is analysed on the normalized text. A normal form may compose or reorder a character
   with what follows, but never across an ASCII character (a starter no composition takes as its
   second part), so with one the text is treated as ending at its last ASCII character.
3. **Added tokens.** A text holding an added token's content is never cut (the callers check). A
   content is taken out before pre-tokenizing, and the text before it is pre-tokenized as if it
   ended there, so a text is treated as ending where a content could begin that what follows
   would complete (``text[q:end]`` a prefix of one); no content can then span the cut either.
   An added token that strips whitespace on its left (``lstrip``) can eat a whitespace run before
   it, so the text is treated as ending where that run starts. ``single_word`` and ``rstrip``
   tokens look at the character before a content and the whitespace after it: both lie after any
   cut, since a cut is always before the text's last character.

Anything this cannot describe (other pre-tokenizers, a splitting later stage, regex constructs not
listed in :func:`parse`, a normalizer that is not per character) gives no rule, and the caller
tokenizes whole strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from invscale.scoring.added import AddedContents
from invscale.scoring.words import GPT2_PATTERN

WILD = "\x00wild"  # any character outside ASCII that the pattern does not name: in every class, maybe
_ABSTRACT = ("\x00L", "\x00N", "\x00S", "\x00O")  # a letter, number, space or other outside ASCII (totality)
_ASCII = [chr(c) for c in range(128)]
_SPACES = set("\t\n\x0b\x0c\r ")  # Oniguruma's \s on ASCII
_MAYBE_SPACES = set("\x1c\x1d\x1e\x1f")  # separators some engines count as space


class Unsupported(ValueError):
    """A pattern or pre-tokenizer this module cannot bound."""


# A character class is a function from an atom to True, False or None (maybe).
def _named(ascii_members, abstract: dict[str, bool | None], maybe=frozenset()):
    def member(atom: str) -> bool | None:
        if len(atom) == 1 and atom.isascii():
            return None if atom in maybe else atom in ascii_members
        return abstract.get(atom)  # WILD and literal non-ASCII characters: None
    return member


_LETTERS = {c for c in _ASCII if c.isalpha()}
_DIGITS = set("0123456789")
_CLASSES = {
    "L": _named(_LETTERS, {"\x00L": True, "\x00N": False, "\x00S": False, "\x00O": False}),
    "N": _named(_DIGITS, {"\x00L": False, "\x00N": True, "\x00S": False, "\x00O": False}),
    "s": _named(_SPACES, {"\x00L": False, "\x00N": False, "\x00S": True, "\x00O": False}, _MAYBE_SPACES),
    "d": _named(_DIGITS, {"\x00L": False, "\x00N": None, "\x00S": False, "\x00O": False}),
    "w": _named(_LETTERS | _DIGITS | {"_"}, {"\x00L": True, "\x00N": None, "\x00S": False, "\x00O": None}),
}


def _negate(member):
    def negated(atom: str) -> bool | None:
        found = member(atom)
        return None if found is None else not found
    return negated


def _union(members):
    def union(atom: str) -> bool | None:
        found = [m(atom) for m in members]
        return True if True in found else (None if None in found else False)
    return union


def _literal(char: str, fold: bool):
    chars = {char.lower(), char.upper()} if fold else {char}

    def member(atom: str) -> bool | None:
        if atom == WILD:
            return None
        return atom in chars
    return member


def _any_but_newline(atom: str) -> bool | None:
    return atom != "\n"


# The pattern's syntax tree: ("class", member) | ("seq", [..]) | ("alt", [..]) | ("rep", node, lo, hi)
# | ("look", node). Look-ahead bodies are read but do not consume.
@dataclass
class _Parser:
    pattern: str
    index: int = 0
    fold: bool = False
    literals: set = field(default_factory=set)

    def parse(self):
        node = self._alternation()
        if self.index != len(self.pattern):
            raise Unsupported(f"unbalanced ')' at {self.index}")
        return node

    def _peek(self, n: int = 1) -> str:
        return self.pattern[self.index:self.index + n]

    def _alternation(self):
        branches = [self._sequence()]
        while self._peek() == "|":
            self.index += 1
            branches.append(self._sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def _sequence(self):
        items = []
        while self.index < len(self.pattern) and self._peek() not in "|)":
            items.append(self._quantified(self._atom()))
        return ("seq", items)

    def _quantified(self, node):
        while True:
            char = self._peek()
            if char in ("*", "+", "?"):
                self.index += 1
                node = ("rep", node, 1 if char == "+" else 0, 1 if char == "?" else None)
                if self._peek() in ("?", "+"):  # lazy or possessive: a subset of the greedy paths
                    self.index += 1
            elif char == "{" and self._bounds() is not None:
                lo, hi, length = self._bounds()
                self.index += length
                node = ("rep", node, lo, hi)
                if self._peek() == "?":  # lazy; a '+' after it repeats it (Oniguruma's Ruby syntax)
                    self.index += 1
            else:
                return node

    def _bounds(self):
        close = self.pattern.find("}", self.index)
        body = self.pattern[self.index + 1:close] if close > 0 else ""
        parts = body.split(",")
        if not body or len(parts) > 2 or not all(p.isdigit() or (p == "" and i == 1) for i, p in enumerate(parts)):
            return None
        lo = int(parts[0])
        hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        if lo > 16 or (hi is not None and hi < lo):
            raise Unsupported(f"repetition {{{body}}}")
        return lo, (None if hi is not None and hi > 16 else hi), close + 1 - self.index

    def _atom(self):
        char = self._peek()
        if char == "(":
            return self._group()
        if char == "[":
            return ("class", self._class())
        if char == "\\":
            return ("class", self._escape())
        if char == ".":
            self.index += 1
            return ("class", _any_but_newline)
        if char in "^$)":
            raise Unsupported(f"anchor or stray {char!r}")
        self.index += 1
        return ("class", self._char(char))

    def _char(self, char: str):
        if not char.isascii():
            self.literals.add(char)
        return _literal(char, self.fold and char.isascii() and char.isalpha())

    def _group(self):
        for opener, kind in (("(?:", "group"), ("(?i:", "fold"), ("(?=", "look"), ("(?!", "look")):
            if self.pattern.startswith(opener, self.index):
                break
        else:
            if self._peek(2) == "(?":
                raise Unsupported(f"group {self.pattern[self.index:self.index + 4]!r}")
            opener, kind = "(", "group"
        self.index += len(opener)
        outer = self.fold
        self.fold = outer or kind == "fold"
        node = self._alternation()
        self.fold = outer
        if self._peek() != ")":
            raise Unsupported("unclosed group")
        self.index += 1
        return ("look", node) if kind == "look" else node

    def _escape(self):
        pattern = self.pattern
        if pattern.startswith(r"\p{", self.index) and pattern[self.index + 4:self.index + 5] == "}":
            name = pattern[self.index + 3]
            self.index += 5
            if name not in ("L", "N"):
                raise Unsupported(f"Unicode class \\p{{{name}}}")
            return _CLASSES[name]
        escape = pattern[self.index + 1:self.index + 2]
        self.index += 2
        if escape in ("s", "d", "w"):
            return _CLASSES[escape]
        if escape in ("S", "D", "W"):
            return _negate(_CLASSES[escape.lower()])
        controls = {"r": "\r", "n": "\n", "t": "\t", "f": "\f", "v": "\v"}
        if escape in controls:
            return self._char(controls[escape])
        if escape and not escape.isalnum() and escape.isascii():
            return self._char(escape)
        raise Unsupported(f"escape \\{escape}")

    def _class(self):
        self.index += 1
        negated = self._peek() == "^"
        self.index += negated
        members, first = [], True
        while self.index < len(self.pattern) and (self._peek() != "]" or first):
            first = False
            if self._peek() == "[" or self.pattern.startswith("&&", self.index):
                raise Unsupported("nested class")
            if self._peek() == "\\":
                members.append(self._escape())
                continue
            low = self._peek()
            self.index += 1
            if self._peek() == "-" and self._peek(2)[1:] not in ("]", ""):
                high = self.pattern[self.index + 1]
                if high == "\\":
                    raise Unsupported("range to an escape")
                self.index += 2
                members.append(self._range(low, high))
            else:
                members.append(self._char(low))
        if self._peek() != "]":
            raise Unsupported("unclosed class")
        self.index += 1
        union = _union(members)
        return _negate(union) if negated else union

    def _range(self, low: str, high: str):
        if not (low.isascii() and high.isascii()):
            raise Unsupported("range outside ASCII")
        chars = {chr(c) for c in range(ord(low), ord(high) + 1)}
        if self.fold:
            chars |= {c.swapcase() for c in chars}

        def member(atom: str) -> bool | None:
            return None if atom == WILD else atom in chars
        return member


def parse(pattern: str):
    """The syntax tree of an Oniguruma ``pattern`` and the non-ASCII characters it names.

    Accepted: literals and escaped punctuation, ``\\r \\n \\t \\f \\v``, ``\\p{L}``, ``\\p{N}``, ``\\s \\S
    \\d \\D \\w \\W``, ``.``, classes with ranges and negation, groups ``( (?: (?i:``, look-ahead ``(?=
    (?!``, alternation and quantifiers (greedy, lazy or possessive; counts up to 16, larger upper
    bounds read as unbounded). Anything else (anchors, look-behind, back-references, other
    Unicode classes) raises :class:`Unsupported`.
    """
    parser = _Parser(pattern)
    return parser.parse(), frozenset(parser.literals)


class _Automaton:
    """Thompson automaton of a syntax tree: per state, its ε-moves (target, whether it bypasses a
    look-ahead) and character moves (class, target)."""

    def __init__(self, tree):
        self.eps: list[list[tuple[int, bool]]] = []
        self.moves: list[list[tuple[object, int]]] = []
        self.start = self._state()
        self.accept = self._build(tree, self.start)

    def _state(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def _build(self, node, entry: int) -> int:
        kind = node[0]
        if kind == "class":
            out = self._state()
            self.moves[entry].append((node[1], out))
            return out
        if kind == "seq":
            for item in node[1]:
                entry = self._build(item, entry)
            return entry
        if kind == "alt":
            out = self._state()
            for branch in node[1]:
                start = self._state()
                self.eps[entry].append((start, False))
                self.eps[self._build(branch, start)].append((out, False))
            return out
        if kind == "look":  # the body is read (and leads nowhere); the match goes on only if it passes
            body = self._state()
            self.eps[entry].append((body, False))
            self._build(node[1], body)
            out = self._state()
            self.eps[entry].append((out, True))
            return out
        _, item, lo, hi = node
        for _ in range(lo):
            entry = self._build(item, entry)
        if hi is None:
            loop, out = self._state(), self._state()
            self.eps[entry].append((loop, False))
            self.eps[self._build(item, loop)].append((loop, False))
            self.eps[loop].append((out, False))
            return out
        out = self._state()
        for _ in range(hi - lo):
            self.eps[entry].append((out, False))
            entry = self._build(item, entry)
        self.eps[entry].append((out, False))
        return out

    def matches_every_character(self) -> bool:
        """Whether the pattern surely matches one character at any position (no gaps in a scan):
        every ASCII character and every kind of other character (letter, number, space, other)
        is a whole match without passing a look-ahead."""
        entry = self._closure({self.start})
        passed = {atom for atom in [*_ASCII, *_ABSTRACT] if atom not in _MAYBE_SPACES and self._whole_match(entry, atom)}
        # a separator counted as space by some engines and not by others behaves as one or the other
        return passed >= (set(_ASCII) | set(_ABSTRACT)) - _MAYBE_SPACES and {"\x00S", "\x00O"} <= passed

    def _whole_match(self, entry: set[int], atom: str) -> bool:
        """Whether ``atom`` alone is surely a whole match from the states ``entry`` (no look-ahead passed)."""
        after = {target for state in entry for member, target in self.moves[state] if member(atom) is True}
        return bool(after) and self.accept in self._closure(after)

    def _closure(self, states: set[int]) -> set[int]:
        """The states reached from ``states`` by ε-moves that pass no look-ahead."""
        found, todo = set(states), list(states)
        while todo:
            for target, bypass in self.eps[todo.pop()]:
                if not bypass and target not in found:
                    found.add(target)
                    todo.append(target)
        return found


class Reach:
    """How far back from a text's end the scan of ``pattern`` may be reading it.

    :meth:`open` scans backwards with the reversed automaton, its state sets built lazily and
    kept (a small deterministic automaton over the characters seen)."""

    def __init__(self, pattern: str | None, gapless: bool | None = None):
        tree, self.literals = parse(pattern) if pattern is not None else (("class", lambda atom: True), frozenset())
        automaton = _Automaton(tree)
        self.gapless = automaton.matches_every_character() if gapless is None else gapless
        self._start = automaton.start
        self._moves = automaton.moves
        back: list[list[int]] = [[] for _ in automaton.eps]
        for state, targets in enumerate(automaton.eps):
            for target, _ in targets:
                back[target].append(state)
        self._back_eps = back
        reading = {state for state, moves in enumerate(automaton.moves) if moves}
        self._sets: list[frozenset[int]] = []
        self._index: dict[frozenset[int], int] = {}
        self._steps: list[dict[str, int]] = []
        self._initial = self._intern(self._back_closure(reading))

    def _back_closure(self, states: set[int]) -> frozenset[int]:
        found, todo = set(states), list(states)
        while todo:
            for source in self._back_eps[todo.pop()]:
                if source not in found:
                    found.add(source)
                    todo.append(source)
        return frozenset(found)

    def _intern(self, states: frozenset[int]) -> int:
        number = self._index.get(states)
        if number is None:
            number = self._index[states] = len(self._sets)
            self._sets.append(states)
            self._steps.append({})
        return number

    def _step(self, number: int, atom: str) -> int:
        """The set of states from which ``atom`` followed by the text after it leads to reading."""
        states = self._sets[number]
        before = {source for source, moves in enumerate(self._moves) for member, target in moves
                  if target in states and member(atom) is not False}
        found = self._steps[number][atom] = self._intern(self._back_closure(before))
        return found

    def open(self, text: str, end: int, low: int = 0) -> int:
        """The earliest position ``p`` (``low`` <= p <= ``end``) from which a try of the pattern may
        read ``text[end]`` (or, in ``text`` alone, its end): ``end`` when none may."""
        earliest, number, literals, sets, steps = end, self._initial, self.literals, self._sets, self._steps
        start = self._start
        for position in range(end - 1, low - 1, -1):
            char = text[position]
            atom = char if char.isascii() or char in literals else WILD
            following = steps[number].get(atom)
            number = self._step(number, atom) if following is None else following
            states = sets[number]
            if not states:
                break
            if start in states:
                earliest = position
        return earliest


@dataclass(frozen=True)
class CutRule:
    """Where texts of one tokenizer may be cut (see the module's argument): the first stage's
    :class:`Reach`; the normalizer to analyse the text through (None: the text as it is); whether
    a Unicode normal form may change what ends a text; the added tokens' contents, and whether one
    strips whitespace on its left."""

    reach: Reach
    normalize: object | None
    composes: bool
    added: AddedContents | None
    lstrip: bool

    def limit(self, text: str, end: int) -> int:
        """The last position a cut of ``text`` may lie at (a pre-token start at or before it; -1 when
        none) so that the tokens before the cut are the same in any text that shares
        ``text[:end]``."""
        if self.composes:
            end = next((i for i in range(end - 1, -1, -1) if text[i].isascii()), 0)
        if self.added is not None:
            end = self.added.could_start(text, end)
        if self.lstrip:
            while end > 0 and text[end - 1].isspace():
                end -= 1
        if self.normalize is not None:
            text = self.normalize(text[:end])
        earliest = self.reach.open(text, end)
        return earliest if self.reach.gapless else earliest - 1


def cut_rule(pre_tokenizer: dict | None, normalizer: dict | None, normalize=None, added: AddedContents | None = None,
             lstrip: bool = False) -> CutRule:
    """The cut rule of a tokenizer described by its pre-tokenizer and normalizer (their JSON);
    ``normalize``: the normalizer's ``normalize_str``; ``added``: its added tokens' contents;
    ``lstrip``: one of them strips whitespace on its left. Raises :class:`Unsupported` when the
    structure cannot be bounded."""
    reach = _first_stage(pre_tokenizer)
    mapped = normalizer is not None and maps_characters(normalizer)
    return CutRule(reach, normalize if mapped else None, bool(normal_forms(normalizer)), added, lstrip)


_SCANS: dict[str, Reach] = {}  # one automaton per pattern, per process


def _scan(pattern: str | None) -> Reach:
    key = pattern if pattern is not None else "\x00one character"
    if key not in _SCANS:
        _SCANS[key] = Reach(pattern, gapless=False if pattern is None else None)
    return _SCANS[key]


_ONE_CHARACTER = ("Digits", "Punctuation", "WhitespaceSplit")


def _first_stage(pre_tokenizer: dict | None) -> Reach:
    if pre_tokenizer is None:
        raise Unsupported("no pre-tokenizer: the whole text is one pre-token")
    if pre_tokenizer.get("type") == "Sequence":
        stages = pre_tokenizer["pretokenizers"]
        if not stages:
            raise Unsupported("an empty pre-tokenizer sequence")
        for later in stages[1:]:
            if not (later.get("type") == "ByteLevel" and not later.get("use_regex", True)
                    and not later.get("add_prefix_space", False)):
                raise Unsupported(f"a later pre-tokenizer stage that may split: {later.get('type')}")
        return _first_stage(stages[0])
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel":
        if pre_tokenizer.get("add_prefix_space", False) or not pre_tokenizer.get("use_regex", True):
            raise Unsupported("ByteLevel that adds a space at the start of each text, or does not split")
        return _scan(GPT2_PATTERN)
    if kind == "Split":
        regex = pre_tokenizer.get("pattern", {}).get("Regex")
        if regex is None or pre_tokenizer.get("behavior") not in ("Isolated", "Removed", "MergedWithNext",
                                                                   "MergedWithPrevious"):
            raise Unsupported("a Split other than a regex scan")
        return _scan(regex)
    if kind == "Metaspace":
        if not pre_tokenizer.get("split", True):
            raise Unsupported("Metaspace without splitting: the whole text is one pre-token")
        return _scan(None)
    if kind == "Whitespace":
        return _scan(r"\w+|[^\w\s]+")
    if kind in _ONE_CHARACTER:
        return _scan(None)
    raise Unsupported(f"pre-tokenizer {kind}")


def normal_forms(normalizer: dict | None) -> list[str]:
    """The Unicode normal forms a normalizer applies."""
    if normalizer is None:
        return []
    if normalizer.get("type") == "Sequence":
        return [form for n in normalizer["normalizers"] for form in normal_forms(n)]
    return [normalizer["type"]] if normalizer.get("type") in ("NFC", "NFKC", "NFD", "NFKD") else []


def maps_characters(normalizer: dict) -> bool:
    """Whether a normalizer changes characters other than by a Unicode normal form."""
    if normalizer.get("type") == "Sequence":
        return any(maps_characters(n) for n in normalizer["normalizers"])
    return normalizer.get("type") not in ("NFC", "NFKC", "NFD", "NFKD")


def per_character(normalizer: dict) -> bool:
    """Normalizers this module can see through: Unicode normal forms (of text already in them),
    ``Lowercase``, and ``Replace`` of one character by one."""
    kind = normalizer.get("type")
    if kind == "Sequence":
        return all(per_character(n) for n in normalizer["normalizers"])
    if kind == "Replace":
        pattern = normalizer.get("pattern", {})
        return "String" in pattern and len(pattern["String"]) == 1 and len(normalizer.get("content", "")) == 1
    return kind in ("NFC", "NFKC", "NFD", "NFKD", "Lowercase")
