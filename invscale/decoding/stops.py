"""Stop strings matched on the decoded text, so one that spans several tokens (or starts inside a
token) is found as lm-evaluation-harness finds it."""

from __future__ import annotations


def decoded(tokenizer, tokens) -> str:
    """The text of ``tokens`` as written (special tokens kept, spaces not cleaned up)."""
    return tokenizer.decode(list(tokens), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def tokens_before(tokenizer, tokens: list[int], at: int) -> list[int]:
    """The longest run of ``tokens``' first tokens whose text ends at or before character ``at`` of
    their whole text (a token that straddles character ``at`` is dropped)."""
    text = decoded(tokenizer, tokens)[:at]
    for count in range(len(tokens), -1, -1):
        if text.startswith(decoded(tokenizer, tokens[:count])):
            return list(tokens[:count])
    return []


class StopFinder:
    """Where the first stop string begins in a sample's decoded text, and the tokens before it."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self._longest = max(map(len, self.stops), default=0)

    def text(self, tokens: list[int]) -> str:
        """The decoded text of ``tokens`` (see :func:`decoded`)."""
        return decoded(self.tokenizer, tokens)

    def find(self, tokens: list[int], searched: int = 0) -> tuple[tuple[int, str] | None, int]:
        """((character where the earliest stop string begins, that string) or None, the length of
        the text of ``tokens``), looking only where a stop could end after character ``searched``
        (the text's length when last looked at)."""
        text = self.text(tokens)
        start = max(0, searched - self._longest)
        found = [(at, stop) for stop in self.stops if (at := text.find(stop, start)) >= 0]
        return (min(found) if found else None), len(text)

    def cut(self, tokens: list[int], at: int) -> list[int]:
        """The tokens wholly before character ``at`` (a stop string's start; see :func:`tokens_before`)."""
        return tokens_before(self.tokenizer, tokens, at)
