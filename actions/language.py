"""The conversation's ``language`` and destination ``country``, updated by every action.

Our actions set both slots themselves from each message (``actions.dialogue.Turn``), rather than
in Rasa's ``action_validate_slot_mappings``: that would be one more HTTP round trip to the action
server for every message, half of what a message costs us (``make bench``).
"""

from __future__ import annotations

from rasa_sdk import Tracker

from bot import taxonomy
from bot.language import sticky_language


def language_after(tracker: Tracker, current: str | None) -> str | None:
    """The conversation's language after the latest message (sticky: bot.language)."""
    message = tracker.latest_message or {}
    requested = None
    if (message.get("intent") or {}).get("name") == "choose_language":
        requested = next(tracker.get_latest_entity_values("language"), None)
    return sticky_language(
        current,
        message.get("language"),
        float(message.get("language_confidence") or 0.0),
        message.get("text") or "",
        requested,
    )


def country_after(tracker: Tracker, current: str | None) -> str | None:
    """The destination country: a country named in the message, unless it is a country workers
    come from ("I am from Nepal" says nothing about where the rules apply)."""
    for value in tracker.get_latest_entity_values("country"):
        if value not in taxonomy.ORIGIN_COUNTRIES:
            return value
    return current
