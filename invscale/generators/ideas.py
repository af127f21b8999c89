"""The Inverse Scaling Prize's public ideas list, each idea with the generators that ask it (or why
none can)."""

from __future__ import annotations

# (idea, generator names, why there is none when the tuple is empty)
IDEAS = (
    ("stubbornness: staying consistent with one's own earlier wrong text", ("stubbornness",), ""),
    ("instructions that switch later instructions off", ("instruction-chain",), ""),
    ("hints about the asker: age, British vs American spelling", ("persona-hint",), ""),
    ("code quality cues: careful vs sloppy code before a bug-prone line", ("code-quality",), ""),
    ("unrelated preceding documents", ("unrelated-documents",), ""),
    ("self-fulfilling prophecy: a prediction that changes the future", ("self-fulfilling-prophecy",), ""),
    ("leading questions whose presupposition is false", ("false-premise",), ""),
    ("incentives to deceive", ("deception-incentive",), ""),
    ("answering wrongly on purpose", ("deliberate-fail",), ""),
    ("personas that disrupt reasoning", ("persona-reasoning",), ""),
    ("commitment races", ("commitment-race",), ""),
    ("ultimatum-style game actions vs human behaviour", ("ultimatum",), ""),
    ("common vs technical meanings of words", ("technical-meaning",), ""),
    ("non-IID training data", (), "about how a model is trained, not a task a trained model is evaluated on"),
    ("human-like \"random\" sequences vs actual randomness", ("random-sequence",), ""),
)
