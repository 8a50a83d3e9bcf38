"""The grievance form (a Rasa form): its questions, and reading each answer.

Every question can be skipped (the pack's ``skip`` words) and the worker can stop at any time
(``cancel``): the form then ends at once and ``action_file_case`` says that no case was opened.
The erase command stops it too, and asks whether to delete the worker's data.
Answers are kept in the worker's own words; only yes/no and numbers are interpreted. A sign of
danger in any answer triggers the emergency response at once, and the form goes on.
"""

from __future__ import annotations

from typing import Any

import regex
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions import dialogue
from actions import messages as m
from actions.actions import HelplineAction, guarded
from actions.dialogue import SKIPPED, Turn
from bot import intake

QUESTIONS = {f.slot: f.question for f in intake.FIELDS}  # None: the numbered country list
YES_NO_SLOTS = intake.YES_NO_SLOTS
# Amounts asked only where the topic makes them matter.
FEES_TOPICS = {"fees", "contract", "documents", None, "other"}
WAGES_TOPICS = {"wages", "hours", "contract", None, "other"}
_NUMBER = regex.compile(r"\d{1,6}")


def intake_slots(tracker: Tracker) -> list[str]:
    """The questions for this report, in order."""
    if tracker.get_slot("intake_cancelled"):
        return []
    topic = tracker.get_slot("topic")
    slots = []
    for slot in dialogue.INTAKE_SLOTS:
        if slot == "intake_country" and tracker.get_slot("country"):
            continue
        if slot == "intake_fees" and topic not in FEES_TOPICS:
            continue
        if slot == "intake_wages" and topic not in WAGES_TOPICS:
            continue
        slots.append(slot)
    return slots


class ValidateGrievanceForm(FormValidationAction):
    run = guarded(FormValidationAction.run)  # an error logs no answer (actions.actions.failed)

    def name(self) -> str:
        return "validate_grievance_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        # rasa_sdk asks this several times in one action call (extracting, validating, asking
        # the next slot): the case store is read once per call, the answer kept on the tracker
        # object, which lives as long as the call (an emergency in an answer reads it again).
        handed_off = getattr(tracker, "_helpline_handed_off", None)
        if handed_off is None:
            turn = Turn(dispatcher, tracker)
            with turn.services.database.session() as session:
                turn.session = session
                handed_off = turn.handoff_case() is not None
            tracker._helpline_handed_off = handed_off
        if handed_off:
            return []  # handed off to a person: the bot asks nothing
        return intake_slots(tracker)

    async def validate_answer(
        self, slot: str, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        turn = Turn(dispatcher, tracker)
        with turn.services.database.session() as session:
            turn.session = session
            updates = self.read_answer(turn, slot)
            if turn.danger():
                dialogue.emergency(turn)  # at once; a person takes over, the report keeps it
                tracker._helpline_handed_off = None  # read again: the form asks no more
            else:
                turn.remember_signal()
        # Slots this turn set (language, country, an emergency's case) and then the answer.
        slots = {e["name"]: e["value"] for e in turn.events if e.get("event") == "slot"}
        return {**slots, **updates}

    def read_answer(self, turn: Turn, slot: str) -> dict[str, Any]:
        if turn.command == "cancel":
            return {"intake_cancelled": True, slot: SKIPPED}
        if turn.command == "erase":  # never an answer: the report stops, erasure is asked
            dialogue.ask_erase(turn)
            return {"intake_cancelled": True, slot: SKIPPED}
        if turn.command == "skip":
            return {slot: SKIPPED}
        if slot in YES_NO_SLOTS:  # consent: only a clear answer counts
            if turn.sure_yes:
                return {slot: True}
            if turn.sure_no:
                return {slot: False}
            turn.say(m.YES_NO_HINT)
            return {slot: None}
        if slot == "intake_workers":
            number = _NUMBER.search(turn.text)
            if number:
                return {slot: int(number.group())}
            turn.say(m.NUMBER_HINT)
            return {slot: None}
        text = turn.text.strip()
        if not text:
            # Nothing to read (only invisible, control or space characters, gone after the
            # NLU's normalizer): no answer, so the question is asked again. Kept as skipped, it
            # lost the answer, and the worker's next message was read as the next question's.
            return {slot: None}
        if slot == "intake_country":
            country = dialogue.country_from_answer(turn)
            if country:
                return {slot: country, "country": country}
            # Not one of the listed countries: keep the worker's words, don't ask again.
            return {slot: text[:100]}
        return {slot: text}


def _validator(slot: str):
    async def validate(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return await self.validate_answer(slot, dispatcher, tracker)

    validate.__name__ = f"validate_{slot}"
    return validate


for _slot in QUESTIONS:
    setattr(ValidateGrievanceForm, f"validate_{_slot}", _validator(_slot))


class AskAction(HelplineAction):
    """``action_ask_<slot>``: asks one question of the form in the worker's language."""

    slot_name = ""
    reads_context = False
    checks_danger = False

    def handle(self, turn: Turn) -> None:
        question = QUESTIONS[self.slot_name]
        if question is None:
            dialogue.ask_country(turn, awaiting=False)  # the form reads the answer
        else:
            turn.say(question)


def _ask_action(slot: str) -> type[AskAction]:
    return type(
        f"ActionAsk{''.join(p.title() for p in slot.split('_'))}",
        (AskAction,),
        {"slot_name": slot, "action_name": f"action_ask_{slot}", "__module__": __name__},
    )


ASK_ACTIONS = [_ask_action(slot) for slot in QUESTIONS]
