"""The bridge from the queue to Rasa: one stored message in, the turn's replies out.

Rasa 3.6 catches an action that fails (its server died, refused, timed out), logs "Encountered
an exception while running action ..." from rasa.core.processor and finishes the turn without
that action's events or reply. The queue must see that, per turn: the record is logged inside
the task processing the message, so a context variable set there collects it, and the turn
counts as failed (the message is retried, never marked done unanswered).

There is no health probe before each turn: failure is seen from the turn itself. Only after a
failed turn does the next one first check the action server's ``/health`` (when the actions run
in their own server), so that a dead action server does not get every message half-run by Rasa
until it is back.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.channels.contract import ProcessingError
from bot.store.queue import rasa_message_id

logger = logging.getLogger(__name__)

_TURN_FAILURES: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "helpline_turn_failures", default=None
)
RASA_ACTION_FAILED = "Encountered an exception while running action"


class _ActionFailureWatch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        failures = _TURN_FAILURES.get()
        if failures is not None and str(record.msg).startswith(RASA_ACTION_FAILED):
            failures.append(record.levelno)


def watch_action_failures() -> None:
    """Attaches the watch to Rasa's processor logger, once."""
    rasa_logger = logging.getLogger("rasa.core.processor")
    if not any(isinstance(h, _ActionFailureWatch) for h in rasa_logger.handlers):
        rasa_logger.addHandler(_ActionFailureWatch(logging.ERROR))


class RasaBridge:
    def __init__(self, actions_health_url: str | None = None) -> None:
        self.on_new_message: Callable[[Any], Awaitable[Any]] | None = None
        self.actions_health_url = actions_health_url
        self.suspect = False  # the last turn failed: check the action server before the next
        watch_action_failures()

    async def turn(self, text: str, sender_id: str, channel: str, message_id: int) -> list[dict]:
        """Runs one Rasa turn; the messages Rasa sent (``CollectingOutputChannel``'s dicts).
        ``ProcessingError`` when Rasa or an action failed (the message is retried)."""
        if self.suspect and not await self._actions_up():
            raise ProcessingError("actions_down")
        from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

        collector = CollectingOutputChannel()
        failures = _TURN_FAILURES.set([])
        try:
            await self.on_new_message(
                UserMessage(
                    text,
                    collector,
                    sender_id=sender_id,
                    input_channel=channel,
                    message_id=rasa_message_id(message_id),
                )
            )
        except Exception as exc:  # noqa: BLE001 - Rasa failed: retried, then a caseworker
            self.suspect = True
            raise ProcessingError(type(exc).__name__) from exc
        finally:
            failed_actions = _TURN_FAILURES.get()
            _TURN_FAILURES.reset(failures)
        if failed_actions:
            # Rasa finished the turn without the action's reply (the action server died or
            # refused mid-turn): the worker got no answer, so the message is retried like any
            # failure, then goes to a caseworker; it is never marked done unanswered.
            self.suspect = True
            raise ProcessingError("action_failed")
        self.suspect = False
        return collector.messages

    async def _actions_up(self) -> bool:
        if not self.actions_health_url:
            return True
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.actions_health_url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False
