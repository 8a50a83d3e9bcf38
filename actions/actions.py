"""The Rasa actions: thin wrappers around ``actions.dialogue``.

Every action runs in one store transaction and, before its own work:
- treats signs of danger in any message as an emergency first (``Turn.danger``: the danger
  detector's assessment in the parse result, the conversation's memory of weak signals);
- stays quiet when the conversation is handed off to a person (only the message is added to the
  case for the caseworker), except for a worker in danger, who gets short holding messages and
  can say they are safe (``dialogue.hold``), and for erasure, which is never held back;
- reads the message as the answer to the bot's last question when it is one (``awaiting``).

An action that fails logs its type and the case reference only (``guarded``): the exception's
message may quote the worker, and what the action server answers Rasa carries the whole tracker.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection

from actions import dialogue
from actions import messages as m
from actions import services as services_module
from actions.dialogue import Turn
from bot.store.queue import MESSAGE_ID_PREFIX
from bot.taxonomy import normalize_case_ref

logger = logging.getLogger(__name__)
Run = Callable[..., Awaitable[list[EventType]]]


class ActionFailed(Exception):
    """An action failed; says which and the exception's type, nothing the worker wrote."""


def _case_ref(tracker: Tracker) -> str | None:
    ref = tracker.get_slot("case_ref")
    return ref if isinstance(ref, str) and normalize_case_ref(ref) == ref else None


def _queued(tracker: Tracker) -> bool:
    """Whether the message came through the channels' queue, which retries it on failure."""
    latest = next((e for e in reversed(tracker.events) if e.get("event") == "user"), {})
    return str(latest.get("message_id") or "").startswith(MESSAGE_ID_PREFIX)


def _apology(tracker: Tracker) -> str:
    try:
        translations = services_module.get().translations
        return translations.text(tracker.get_slot("language"), m.NOT_UNDERSTOOD)
    except Exception:  # noqa: BLE001 - the apology must not fail in turn
        return m.NOT_UNDERSTOOD


def failed(name: str, exc: Exception, dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Logs the failure without its details. A queued message is retried by the queue, then goes
    to a caseworker (``bot.channels.inbox``): the action server answers with an error (Rasa logs
    "Encountered an exception while running action", which the queue watches) carrying no
    details. Anywhere else (the REST channel) the worker gets an apology instead of nothing."""
    ref = _case_ref(tracker)
    case = f", case {ref}" if ref else ""
    logger.error("action %s failed (%s)%s", name, type(exc).__name__, case)
    if _queued(tracker):
        raise ActionFailed(f"{name} failed ({type(exc).__name__})") from None
    dispatcher.utter_message(text=_apology(tracker))


def guarded(run: Run) -> Run:
    """Wraps an action's ``run``: an exception never leaves it with its message or traceback."""

    @functools.wraps(run)
    async def guarded_run(
        self: Action, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        try:
            return await run(self, dispatcher, tracker, domain)
        except ActionExecutionRejection:
            raise  # not a failure: Rasa's signal to predict another action (no details)
        except Exception as exc:  # noqa: BLE001 - logged without details, see failed()
            dispatcher.messages.clear()  # half a turn's replies would mislead
            failed(self.name(), exc, dispatcher, tracker)
            return []

    return guarded_run


class HelplineAction(Action):
    action_name = ""
    quiet_in_handoff = True
    checks_danger = True
    reads_context = True

    def name(self) -> str:
        return self.action_name

    def handle(self, turn: Turn) -> None:
        raise NotImplementedError

    @guarded
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        turn = Turn(dispatcher, tracker)
        with turn.services.database.session() as session:
            turn.session = session
            if self.checks_danger and turn.danger():
                dialogue.emergency(turn)
                return turn.events
            # Erasure is never held back by a hand-off or an emergency (dialogue.asks_erasure).
            if self.quiet_in_handoff and not (self.reads_context and dialogue.asks_erasure(turn)):
                case = turn.handoff_case()
                if case is not None and case.danger_kind and self.reads_context:
                    dialogue.hold(turn, case)  # never silence for someone in danger
                    turn.remember_signal()
                    return turn.events
                if case is not None:
                    turn.record(case)  # for the caseworker; the bot says nothing
                    turn.remember_signal()
                    return turn.events
            if not (self.reads_context and dialogue.resolve_context(turn)):
                self.handle(turn)
            turn.record()
            turn.keep_contact_language()
            turn.remember_signal()
        return turn.events


class ActionGreet(HelplineAction):
    action_name = "action_greet"

    def handle(self, turn: Turn) -> None:
        dialogue.show_menu(turn, greeting=True)


class ActionRoute(HelplineAction):
    """help, affirm, deny, thank, goodbye, out_of_scope, nlu_fallback."""

    action_name = "action_route"

    def handle(self, turn: Turn) -> None:
        dialogue.route(turn)


class ActionChooseLanguage(HelplineAction):
    action_name = "action_choose_language"

    def handle(self, turn: Turn) -> None:
        dialogue.choose_language(turn)


class ActionRightsAnswer(HelplineAction):
    action_name = "action_rights_answer"

    def handle(self, turn: Turn) -> None:
        dialogue.rights_answer(turn, turn.intent)


class ActionStartReport(HelplineAction):
    action_name = "action_start_report"

    def handle(self, turn: Turn) -> None:
        dialogue.start_report(turn, follow=False)  # the rule runs the form next


class ActionFileCase(HelplineAction):
    """After the grievance form: store the case (or say that nothing was stored)."""

    action_name = "action_file_case"
    quiet_in_handoff = False  # keeps what was collected; says nothing if a person took over
    reads_context = False
    checks_danger = False  # the form already acted on danger in any answer

    def handle(self, turn: Turn) -> None:
        dialogue.file_case(turn)


class ActionCaseStatus(HelplineAction):
    action_name = "action_case_status"

    def handle(self, turn: Turn) -> None:
        dialogue.case_status(turn)


class ActionEmergency(HelplineAction):
    action_name = "action_emergency"
    quiet_in_handoff = False
    reads_context = False

    def handle(self, turn: Turn) -> None:
        # The classifier said emergency but the danger assessment did not agree (a figure of
        # speech): answered like any unclear message, never silently dropped.
        dialogue.route(turn)


class ActionHandoff(HelplineAction):
    action_name = "action_handoff"

    def handle(self, turn: Turn) -> None:
        dialogue.handoff(turn)
