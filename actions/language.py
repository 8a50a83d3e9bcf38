"""Slot extraction after every user message: the ``language`` and ``country`` slots."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import ValidationAction

from bot import taxonomy
from bot.language import sticky_language


class ValidateSlotMappings(ValidationAction):
    """``action_validate_slot_mappings``: Rasa runs it after each user message."""

    async def extract_language(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        message = tracker.latest_message or {}
        requested = None
        if (message.get("intent") or {}).get("name") == "choose_language":
            requested = next(tracker.get_latest_entity_values("language"), None)
        current = tracker.get_slot("language")
        language = sticky_language(
            current,
            message.get("language"),
            float(message.get("language_confidence") or 0.0),
            message.get("text") or "",
            requested,
        )
        return {"language": language} if language != current else {}

    async def extract_country(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        """The destination country: a country named in the message, unless it is a country
        workers come from ("I am from Nepal" says nothing about where the rules apply)."""
        for value in tracker.get_latest_entity_values("country"):
            if value not in taxonomy.ORIGIN_COUNTRIES and value != tracker.get_slot("country"):
                return {"country": value}
        return {}
