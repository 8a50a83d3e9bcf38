"""The conversation's ``language`` and destination ``country``, updated by every action.

Our actions set both slots themselves from each message (``actions.dialogue.Turn``), rather than
in Rasa's ``action_validate_slot_mappings``: that would be one more HTTP round trip to the action
server for every message, half of what a message costs us (``make bench``).
"""

from __future__ import annotations

from rasa_sdk import Tracker

from bot import taxonomy
from bot.language import sticky_language

KINDS = ("country", "language")  # the two entities a name can be at once


def _readings(tracker: Tracker, entity: str) -> list[str]:
    """The message's ``entity`` values. A name that is both a country and a language
    ("myanmar", "thai": the gazetteer gives both) is read as the one the bot asked for, else
    the one the worker is choosing, never as the other."""
    message = tracker.latest_message or {}
    entities = [e for e in message.get("entities") or [] if e.get("entity") in KINDS]
    kinds: dict[tuple, set[str]] = {}
    for e in entities:
        kinds.setdefault((e.get("start"), e.get("end")), set()).add(e["entity"])
    asked = tracker.get_slot("awaiting")
    if asked not in KINDS and (message.get("intent") or {}).get("name") == "choose_language":
        asked = "language"
    other = asked if asked in KINDS and asked != entity else None
    return [
        e.get("value")
        for e in entities
        if e["entity"] == entity and other not in kinds[e.get("start"), e.get("end")]
    ]


def language_after(tracker: Tracker, current: str | None) -> str | None:
    """The conversation's language after the latest message (sticky: bot.language)."""
    message = tracker.latest_message or {}
    requested = None
    if (message.get("intent") or {}).get("name") == "choose_language":
        requested = next(iter(_readings(tracker, "language")), None)
    return sticky_language(
        current,
        message.get("language"),
        float(message.get("language_confidence") or 0.0),
        # As typed: the normaliser drops the slash of Telegram's "/start" (a bot command).
        message.get("original_text") or message.get("text") or "",
        requested,
    )


def country_after(tracker: Tracker, current: str | None) -> str | None:
    """The destination country: a country named in the message, unless it is a country workers
    come from ("I am from Nepal" says nothing about where the rules apply)."""
    for value in _readings(tracker, "country"):
        if value not in taxonomy.ORIGIN_COUNTRIES:
            return value
    return current
