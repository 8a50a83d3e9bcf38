"""A conversation's language: set from the first clear message, then sticky.

Short replies that every language shares ("ok", "yes", "👍") must never flip a conversation
into another language. The language changes only when the worker asks for one
(``choose_language`` with a language named) or writes a message that is unmistakably in another
language: identified with high confidence and at least a few words long.
"""

from __future__ import annotations

import regex

FIRST_CONFIDENCE = 0.5  # enough to choose a language when there is none yet
SWITCH_CONFIDENCE = 0.9  # needed to leave the conversation's language without being asked
SWITCH_MIN_WORDS = 3
_WORD = regex.compile(r"[\p{L}\p{M}]+")


def sticky_language(
    current: str | None,
    detected: str | None,
    confidence: float,
    text: str = "",
    requested: str | None = None,
) -> str | None:
    """The conversation's language after this message."""
    if requested:
        return requested
    if not detected:
        return current
    if current is None:
        return detected if confidence >= FIRST_CONFIDENCE else None
    words = len(_WORD.findall(text))
    if detected != current and confidence >= SWITCH_CONFIDENCE and words >= SWITCH_MIN_WORDS:
        return detected
    return current
