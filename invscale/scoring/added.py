"""Where the contents of a tokenizer's added tokens occur in a text.

A tokenizer finds its added tokens (special tokens, chat markers) in the raw text before anything
else, so a text that holds one's content is never cut or tokenized piecewise here. The contents are
found with ``str.find``, behind one scan per distinct first character: nearly every text holds none
of them (most contents start with ``<``), and no regular expression has to be built per process.
"""

from __future__ import annotations

from typing import Iterable


class AddedContents:
    """The contents of a tokenizer's added tokens (``contents``, longest first; ``longest``; ``firsts``,
    their distinct first characters)."""

    def __init__(self, contents: Iterable[str]):
        self.contents = tuple(sorted({c for c in contents if c}, key=len, reverse=True))
        self.longest = max(map(len, self.contents), default=0)
        self.firsts = tuple(sorted({c[0] for c in self.contents}))

    def __bool__(self) -> bool:
        return bool(self.contents)

    def found_in(self, text: str, start: int = 0) -> bool:
        """Whether a content occurs in ``text`` other than wholly before ``start`` (anywhere, when 0)."""
        low = max(0, start - self.longest + 1)
        for first in self.firsts:
            if text.find(first, low) >= 0:
                return any(text.find(content, max(0, start - len(content) + 1)) >= 0 for content in self.contents)
        return False

    def could_start(self, text: str, end: int) -> int:
        """The earliest position ``q`` in the last ``longest - 1`` characters before ``end`` at which a
        content could start and run on past ``end`` (``text[q:end]`` begins a longer one); ``end`` when none."""
        low, earliest = max(0, end - self.longest + 1), end
        for first in self.firsts:
            position = text.find(first, low, earliest)
            while position >= 0:
                piece = text[position:end]
                if any(len(content) > len(piece) and content.startswith(piece) for content in self.contents):
                    earliest = position
                    break
                position = text.find(first, position + 1, earliest)
        return earliest
