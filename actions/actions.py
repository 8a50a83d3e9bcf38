"""The Rasa actions: thin wrappers around ``actions.dialogue``.

Every action runs in one store transaction and, before its own work:
- treats signs of danger in any message as an emergency first (``Turn.danger``: the danger
  detector's assessment in the parse result, the conversation's memory of weak signals);
- stays quiet when the conversation is handed off to a person (only the message is added to the
  case for the caseworker), except for a worker in danger, who gets short holding messages and
  can say they are safe (``dialogue.hold``), and for erasure, which is never held back;
- reads the message as the answer to the bot's last question when it is one (``awaiting``).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions import dialogue
from actions.dialogue import Turn


class HelplineAction(Action):
    action_name = ""
    quiet_in_handoff = True
    checks_danger = True
    reads_context = True

    def name(self) -> str:
        return self.action_name

    def handle(self, turn: Turn) -> None:
        raise NotImplementedError

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
