"""A conversation's language: set from the first clear message, then sticky.

Short replies that every language shares ("ok", "yes", "👍") must never flip a conversation
into another language. The language changes only when the worker asks for one
(``choose_language`` with a language named) or writes a message that is unmistakably in another
language: identified with high confidence and at least a few words long, or written in the
script of another language (Bengali, Devanagari, Burmese and Thai script are each one language
here, and Thai and Burmese put no spaces between words: one "word" can be a whole sentence).

Telegram sends "/start" as every chat's first message, whatever the worker's language: a bot
command never sets or changes the language.
"""

from __future__ import annotations

import regex

FIRST_CONFIDENCE = 0.5  # enough to choose a language when there is none yet
SWITCH_CONFIDENCE = 0.9  # needed to leave the conversation's language without being asked
SWITCH_MIN_WORDS = 3
_WORD = regex.compile(r"[\p{L}\p{M}]+")
# A language's own script, unmistakable: enough of its letters switch without counting words.
_SCRIPTS = {
    "bn": regex.compile(r"\p{Bengali}"),
    "ne": regex.compile(r"\p{Devanagari}"),
    "my": regex.compile(r"\p{Myanmar}"),
    "th": regex.compile(r"\p{Thai}"),
}
SWITCH_MIN_SCRIPT_LETTERS = 4
_COMMAND = regex.compile(r"\s*/[A-Za-z0-9_]+(@\w+)?\s*$")  # a Telegram bot command: /start


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
    if not detected or _COMMAND.match(text):
        return current
    if current is None:
        return detected if confidence >= FIRST_CONFIDENCE else None
    if detected == current or confidence < SWITCH_CONFIDENCE:
        return current
    if len(_WORD.findall(text)) >= SWITCH_MIN_WORDS:
        return detected
    script = _SCRIPTS.get(detected)
    if script is not None and len(script.findall(text)) >= SWITCH_MIN_SCRIPT_LETTERS:
        return detected
    return current
