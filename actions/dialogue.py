"""The helpline's conversation logic, independent of how Rasa calls it.

A ``Turn`` is one run of one action: it reads the tracker, speaks through the dispatcher in the
conversation's language (``bot.i18n``), writes to the case store in one transaction, and collects
the events to return to Rasa. The Rasa actions in ``actions/actions.py`` and the form in
``actions/form.py`` are thin wrappers around the functions here.

What the bot waits for after a question is the ``awaiting`` slot: ``menu``, ``language``,
``country``, ``offer`` (after a rights answer), ``case_ref``, ``secret``, ``erase``. A bare
number (``choice``, from ``nlu.commands``) or a yes/no is read against it, whatever the
classifier thought of the message; anything else is a new request.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions import messages as m
from actions import services as services_module
from actions.language import country_after, language_after
from bot import intake, taxonomy
from bot.channels.contract import QUICK_EXIT_REQUEST as QUICK_EXIT
from bot.i18n import format_date
from bot.store import queue
from bot.store import repository as repo
from bot.store.models import Case, Contact, Message

logger = logging.getLogger(__name__)

# Main menu numbers (messages.MENU) and the destination countries offered by number.
MENU_OPTIONS = {
    "1": "ask",
    "2": "report",
    "3": "status",
    "4": "handoff",
    "5": "language",
    "6": "erase",
    "7": "quick_exit",  # Telegram only (messages.MENU_TELEGRAM): clear the chat from the phone
}
MENU_COUNTRIES = ("MY", "TH", "HK", "SG", "TW", "QA")
OTHER_COUNTRY = "XX"  # "another country": general answers, no country-specific content
YES, NO = "1", "2"
# The intents answered with a rights answer (nlu/data/rules.yml, action_rights_answer).
RIGHTS_TOPICS = (
    "fees", "documents", "wages", "hours", "contract", "change_employer", "safety", "abuse",
    "living_conditions", "complaint_process",
)  # fmt: skip
DANGER_SCORE = 0.3  # emergency score that counts as danger inside any message (README: measured)
UNSPECIFIED = "unspecified"  # danger of a kind the detector did not name
SURE = 0.9  # classifier confidence for a worded yes/no to count where it cannot be undone
INTAKE_SLOTS = intake.SLOTS  # the grievance form, in order (bot/intake.py)
SKIPPED = "-"
# Channels that store every message themselves (bot/channels): the transcript is theirs.
QUEUED_CHANNELS = frozenset({"telegram", "sms", "whatsapp"})
# Topic intents -> the ILO forced-labour indicators a message about them shows (a first pass
# that caseworkers correct on the dashboard).
INDICATORS_BY_INTENT = {
    "documents": ("retention_of_documents",),
    "wages": ("withholding_of_wages",),
    "hours": ("excessive_overtime",),
    "abuse": ("intimidation_threats",),
    "living_conditions": ("abusive_conditions",),
    "safety": ("abusive_conditions",),
    "contract": ("deception",),
    "emergency": ("physical_sexual_violence",),
}


class Turn:
    """One action run: the tracker read, the replies said, the events to return."""

    def __init__(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        services: services_module.Services | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.tracker = tracker
        self.services = services or services_module.get()
        self.events: list[EventType] = []
        self.sent: list[str] = []
        self.session = None
        self._slots: dict[str, Any] = {}
        self._contact: Contact | None = None
        message = tracker.latest_message or {}
        self.message = message
        self.intent = (message.get("intent") or {}).get("name")
        self.choice: str | None = message.get("choice")
        self.command: str | None = message.get("command")
        self.text: str = message.get("text") or ""
        # The conversation's language and destination, from this message (actions/language.py).
        for slot, after in (("language", language_after), ("country", country_after)):
            current = tracker.get_slot(slot)
            value = after(tracker, current)
            if value != current:
                self.set(slot, value)

    # --- reading ---------------------------------------------------------------------------
    def slot(self, name: str) -> Any:
        return self._slots[name] if name in self._slots else self.tracker.get_slot(name)

    @property
    def language(self) -> str:
        return self.slot("language") or self.message.get("language") or "en"

    @property
    def channel(self) -> str:
        return self.tracker.get_latest_input_channel() or "rest"

    def entity(self, name: str) -> str | None:
        return next(self.tracker.get_latest_entity_values(name), None)

    def score(self, intent: str) -> float:
        for item in self.message.get("intent_ranking") or []:
            if item.get("name") == intent:
                return float(item.get("confidence") or 0.0)
        top = self.message.get("intent") or {}
        return float(top.get("confidence") or 0.0) if top.get("name") == intent else 0.0

    @property
    def yes(self) -> bool:
        return self.choice == YES or (self.choice is None and self.intent == "affirm")

    @property
    def no(self) -> bool:
        return self.choice == NO or (self.choice is None and self.intent == "deny")

    @property
    def sure_yes(self) -> bool:
        """Yes, for what cannot be taken back (consent to share, erasure): "1", or a yes that the
        classifier is sure of (noise such as "???" or "hmm" often looks like a weak yes)."""
        return self.choice == YES or (
            self.choice is None and self.intent == "affirm" and self.score("affirm") >= SURE
        )

    @property
    def sure_no(self) -> bool:
        return self.choice == NO or (
            self.choice is None and self.intent == "deny" and self.score("deny") >= SURE
        )

    def danger(self) -> bool:
        """Signs of danger now in this message, whatever it was classified as: see
        ``danger_kind``."""
        return self.danger_kind is not None

    @functools.cached_property
    def danger_kind(self) -> str | None:
        """The kind of danger this message shows (``UNSPECIFIED`` when the kind is not known), or
        None. Danger is: the danger detector's score over its threshold (``danger_kind`` in the
        parse result, ``nlu.danger``); or, with a model that has no danger detector, the
        classifier's ``emergency`` intent; or a weak signal
        (hopelessness, a farewell) right after another weak signal, or from a worker whose
        danger no person has cleared yet. A bare number or a command word is never danger."""
        if self.choice or self.command:
            return None
        kind = self.message.get("danger_kind")
        if kind:
            return str(kind)
        if "danger" not in self.message and (
            self.intent == "emergency" or self.score("emergency") >= DANGER_SCORE
        ):
            # A model without the danger detector: the topic classifier's emergency. With the
            # detector, the classifier's emergency adds no danger found and many false alarms
            # (measured: 1 message found and 34 false alarms in 1,400 labelled messages, 0 and 6
            # on the development set; "so sleepy I could die" is emergency at 0.63).
            return UNSPECIFIED
        if self.weak_signal and (self.slot("danger_signal") or self.flagged() is not None):
            return "suicide"  # hopelessness, then a farewell: the risk is to their life
        return None

    @property
    def weak_signal(self) -> bool:
        return bool(self.message.get("danger_weak")) and not (self.choice or self.command)

    def remember_signal(self) -> None:
        """Keeps whether this message was a weak signal, for the next one (``danger_kind``)."""
        weak = self.weak_signal or None
        if self.tracker.get_slot("danger_signal") != weak and self.slot("danger_signal") != weak:
            self.set("danger_signal", weak)

    def flagged(self) -> Case | None:
        """The worker's open case flagged as danger that no person has cleared."""
        contact = self.contact()
        if contact is None or self.session is None:
            return None
        return repo.flagged_case(self.session, contact=contact)

    # --- writing ---------------------------------------------------------------------------
    def t(self, message: str, **values: Any) -> str:
        return self.services.translations.text(self.language, message, **values)

    def say(self, message: str, **values: Any) -> None:
        self.send(self.t(message, **values))

    def send(self, text: str) -> None:
        self.dispatcher.utter_message(text=text)
        self.sent.append(text)

    def set(self, slot: str, value: Any) -> None:
        self._slots[slot] = value
        self.events.append(SlotSet(slot, value))

    def follow(self, action: str) -> None:
        self.events.append(FollowupAction(action))

    # --- the case store ----------------------------------------------------------------------
    @property
    def pseudonym(self) -> str:
        return self.services.pseudonym(self.channel, self.tracker.sender_id)

    def contact(self, create: bool = False) -> Contact | None:
        if self._contact is None:
            self._contact = self.session.execute(
                select(Contact).where(Contact.pseudonym == self.pseudonym)
            ).scalar_one_or_none()
            if self._contact is None and create:
                self._contact = repo.upsert_contact(
                    self.session,
                    pseudonym=self.pseudonym,
                    channel=self.channel,
                    language=self.language,
                    country=self.destination,
                )
        return self._contact

    def keep_contact_language(self) -> None:
        """The conversation's language on the contact too: the channels answer STOP, START and
        HELP in it before the NLU, and offer SMS without accents where a language allows it."""
        contact = self.contact()
        if contact is not None and contact.language != self.language:
            contact.language = self.language

    @property
    def destination(self) -> str | None:
        country = self.slot("country")
        return country if country and country != OTHER_COUNTRY else None

    def current_case(self) -> Case | None:
        """The case this conversation is attached to (filed here, or raised by an emergency)."""
        ref = self.slot("case_ref")
        case = repo.find_case(self.session, reference=ref) if ref else None
        contact = self.contact()
        if case is not None and contact is not None and case.contact_id == contact.id:
            return case
        return None

    def handoff_case(self) -> Case | None:
        contact = self.contact()
        if contact is None:
            return None
        return self.session.execute(
            select(Case)
            .where(Case.contact_id == contact.id, Case.handoff.is_(True))
            .order_by(Case.id.desc())
            .limit(1)
        ).scalar_one_or_none()

    def record(self, case: Case | None = None, *, history: bool = False) -> None:
        """Adds this turn to ``case``'s transcript: the worker's message and the replies, or with
        ``history`` the whole conversation so far from the tracker."""
        case = case or self.current_case()
        contact = self.contact()
        if contact is not None and self.channel in QUEUED_CHANNELS:
            self._classify_message(contact)
        if case is None or contact is None:
            return
        if self.channel in QUEUED_CHANNELS:
            self._link(case, contact, history)
            return
        if history:
            awaiting = None  # what the bot had asked when each message came (secrets are masked)
            for event in self.tracker.events:
                if event.get("event") == "slot" and event.get("name") == "awaiting":
                    awaiting = event.get("value")
                elif event.get("event") == "user" and event.get("text"):
                    choice = (event.get("parse_data") or {}).get("choice")
                    self._add_inbound(case, contact, event, secret=awaiting == "secret" and choice)
                elif event.get("event") == "bot" and event.get("text"):
                    self._add_reply(case, contact, event["text"])
        else:
            latest = next(
                (e for e in reversed(self.tracker.events) if e.get("event") == "user"), None
            )
            if latest and latest.get("text"):
                secret = self.tracker.get_slot("awaiting") == "secret" and bool(self.choice)
                self._add_inbound(case, contact, latest, secret=secret)
        for text in self.sent:
            self._add_reply(case, contact, text)
        self.sent = []

    def _add_reply(self, case: Case, contact: Contact, text: str) -> None:
        """A reply in the transcript, with any case secret it gave the worker masked."""
        repo.add_message(
            self.session, contact=contact, case=case, direction="out",
            text=repo.mask_secrets(self.session, text), language=self.language, author="bot",
        )  # fmt: skip

    def _link(self, case: Case, contact: Contact, history: bool) -> None:
        """Our channels store every message themselves (bot/channels/inbox.py): attach them to
        the case instead of copying them; the replies of this turn follow the message."""
        if history:
            for message in queue.without_case(self.session, contact.id):
                message.case = case
        message = self.stored_message(contact)
        if message is not None:
            message.case = case
        self.sent = []

    def stored_message(self, contact: Contact | None) -> Message | None:
        """The worker's message of this turn as our channels stored it (before the NLU ran)."""
        if contact is None:
            return None
        return queue.stored_for_turn(self.session, contact.id, self.message_id)

    def _classify_message(self, contact: Contact) -> None:
        """The intent and its confidence on the stored message of this turn (our channels store
        it before the NLU runs): caseworkers see them in the transcript."""
        message = self.stored_message(contact)
        if message is None or message.intent:
            return
        latest = next((e for e in reversed(self.tracker.events) if e.get("event") == "user"), {})
        intent = (latest.get("parse_data") or {}).get("intent") or {}
        message.intent = intent.get("name")
        message.confidence = intent.get("confidence")

    @property
    def message_id(self) -> str | None:
        latest = next((e for e in reversed(self.tracker.events) if e.get("event") == "user"), None)
        return latest.get("message_id") if latest else None

    def _add_inbound(self, case: Case, contact: Contact, event: dict, secret: bool) -> None:
        """A worker's message in the transcript; a secret they typed (``secret``) masked."""
        provider_id = f"rasa:{event.get('message_id')}" if event.get("message_id") else None
        if provider_id and queue.in_transcript(self.session, provider_id):
            return  # already in the transcript (from the channel or an earlier turn)
        parse = event.get("parse_data") or {}
        repo.add_message(
            self.session,
            contact=contact,
            case=case,
            direction="in",
            text=repo.SECRET_MASK if secret else event["text"],
            language=parse.get("language") or self.language,
            intent=(parse.get("intent") or {}).get("name"),
            provider_id=provider_id,
        ).confidence = (parse.get("intent") or {}).get("confidence")


# --- menu and language -----------------------------------------------------------------------
def show_menu(turn: Turn, greeting: bool = False) -> None:
    if greeting:
        turn.say(m.GREETING)
    say_menu(turn)


def say_menu(turn: Turn) -> None:
    """The menu; on Telegram with the quick exit, which only Telegram can do (delete the chat)."""
    turn.say(m.MENU_TELEGRAM if turn.channel == "telegram" else m.MENU)
    turn.set("awaiting", "menu")


def not_understood(turn: Turn) -> None:
    turn.say(m.NOT_UNDERSTOOD)
    say_menu(turn)


def language_options(turn: Turn) -> list[str]:
    return [pack.code for pack in turn.services.packs]


def ask_language(turn: Turn) -> None:
    lines = [turn.t(m.CHOOSE_LANGUAGE)]
    for i, pack in enumerate(turn.services.packs, start=1):
        lines.append(f"{i} {pack.name}")
    turn.send("\n".join(lines))
    turn.set("awaiting", "language")


def set_language(turn: Turn, code: str) -> None:
    turn.set("language", code)
    turn.say(m.LANGUAGE_SET)
    turn.say(m.MENU_HINT)
    turn.set("awaiting", None)
    contact = turn.contact()
    if contact is not None:
        contact.language = code


def choose_language(turn: Turn) -> None:
    requested = turn.entity("language")
    if requested and requested in language_options(turn):
        set_language(turn, requested)
    else:
        ask_language(turn)


# --- rights answers ----------------------------------------------------------------------------
def country_name(turn: Turn, code: str) -> str:
    for pack in turn.services.packs:
        if pack.code == turn.language:
            names = pack.countries.get(code) or []
            if names:
                name = str(names[0])
                return name.title() if name.isascii() and name.islower() else name
    try:
        from babel import Locale

        return Locale.parse(turn.language).territories.get(code) or code
    except (ValueError, LookupError):
        return code


def ask_country(turn: Turn, awaiting: bool = True) -> None:
    lines = [turn.t(m.ASK_COUNTRY)]
    for i, code in enumerate(MENU_COUNTRIES, start=1):
        lines.append(f"{i} {country_name(turn, code)}")
    lines.append(f"{len(MENU_COUNTRIES) + 1} {turn.t(m.OTHER_COUNTRY)}")
    turn.send("\n".join(lines))
    if awaiting:
        turn.set("awaiting", "country")


def country_from_answer(turn: Turn) -> str | None:
    """The destination country in a reply to the country question, if it is one."""
    if turn.choice:
        index = int(turn.choice) - 1
        if 0 <= index < len(MENU_COUNTRIES):
            return MENU_COUNTRIES[index]
        if index == len(MENU_COUNTRIES):
            return OTHER_COUNTRY
        return None
    country = turn.entity("country")
    if country and country not in taxonomy.ORIGIN_COUNTRIES:
        return country
    return None


def rights_answer(turn: Turn, topic: str) -> None:
    turn.set("topic", topic)
    country = turn.slot("country")
    if not country:
        ask_country(turn)
        return
    answer = turn.services.rights.answer(turn.language, topic, turn.destination)
    if answer is None:  # pragma: no cover - every topic intent has an answer (tested)
        not_understood(turn)
        return
    if answer.general and turn.destination and turn.services.rights.countries(topic):
        turn.say(m.GENERAL_ANSWER, country=country_name(turn, turn.destination))
    turn.send(answer.text)
    turn.say(m.ANSWER_OFFER)
    turn.set("awaiting", "offer")


def answer_source(turn: Turn) -> None:
    topic = turn.slot("topic")
    answer = turn.services.rights.answer(turn.language, topic, turn.destination) if topic else None
    if answer is None:
        show_menu(turn)
        return
    turn.say(
        m.ANSWER_SOURCE, source=answer.source, date=format_date(turn.language, answer.reviewed)
    )
    turn.say(m.ANSWER_OFFER)
    turn.set("awaiting", "offer")


# --- grievance intake --------------------------------------------------------------------------
def start_report(turn: Turn, topic: str | None = None, follow: bool = True) -> None:
    """Privacy notice, then the grievance form (started by the rule for ``report_grievance``,
    or here, with ``follow``, from the menu or after a rights answer)."""
    if topic:
        turn.set("topic", topic)
    for slot in INTAKE_SLOTS:
        if turn.tracker.get_slot(slot) is not None:
            turn.set(slot, None)
    turn.set("intake_cancelled", None)
    turn.set("awaiting", None)
    turn.say(m.INTAKE_PRIVACY)
    if follow:
        turn.follow("grievance_form")


def intake_category(turn: Turn, intents: list[str]) -> str:
    topic = turn.slot("topic")
    if topic in taxonomy.CASE_CATEGORIES:
        return topic
    topics = [i for i in intents if i in taxonomy.CASE_CATEGORIES]
    # The most frequent topic; on a tie the first one (what happened, in the worker's words).
    return max(topics, key=lambda t: (topics.count(t), -topics.index(t))) if topics else "other"


def intake_intents(turn: Turn) -> list[str]:
    """The intents of the worker's messages since the report started (their own words)."""
    intents: list[str] = []
    for event in reversed(turn.tracker.events):
        if event.get("event") == "user":
            parse = event.get("parse_data") or {}
            if parse.get("choice") or parse.get("command"):
                continue
            name = (parse.get("intent") or {}).get("name")
            ranking = parse.get("intent_ranking") or []
            if name == "nlu_fallback" and len(ranking) > 1:
                name = ranking[1]["name"]
            if name:
                intents.append(name)
        if event.get("event") == "active_loop" and event.get("name") == "grievance_form":
            break
    return intents[::-1]  # in the order the worker wrote them


def assess(turn: Turn, intents: list[str]) -> tuple[str, str, list[str]]:
    """Category, urgency and ILO indicators from what the worker wrote (rights brief sect. 4)."""
    indicators = sorted({i for intent in intents for i in INDICATORS_BY_INTENT.get(intent, ())})
    category = intake_category(turn, intents)
    urgency = "normal"
    if "emergency" in intents:
        urgency = "immediate"
    elif len(indicators) >= 3 or {"retention_of_documents", "intimidation_threats"} <= set(
        indicators
    ):
        urgency = "high"
    if len(indicators) >= 3:
        category = "forced_labour"
    return category, urgency, indicators


def _intake_value(turn: Turn, slot: str) -> Any:
    value = turn.slot(slot)
    return None if value in (None, SKIPPED) else value


def file_case(turn: Turn) -> None:
    if turn.slot("intake_cancelled"):
        erasing = turn.slot("awaiting") == "erase"  # the report stopped for the erase question
        if not erasing:
            turn.say(m.INTAKE_CANCELLED)
        clear_intake(turn, awaiting=erasing)
        return
    intents = intake_intents(turn)
    category, urgency, indicators = assess(turn, intents)
    country = _intake_value(turn, "intake_country") or turn.destination
    if country == OTHER_COUNTRY:
        country = None
    answers = {
        field.column: _intake_value(turn, field.slot)
        for field in intake.FIELDS
        if field.kind != "country"
    }
    if answers["workers_affected"] is not None:
        answers["workers_affected"] = int(answers["workers_affected"])
    contact = turn.contact(create=True)
    # Only a case opened during this intake (by an emergency) is completed; any other is kept.
    ref = turn.slot("intake_case")
    case = repo.find_case(turn.session, reference=ref) if ref else None
    quiet = case is not None and bool(case.handoff)  # a person has taken over (an emergency)
    if case is not None and case.status not in ("resolved", "closed"):
        # An emergency during this intake already opened the case: complete it, keep the secret.
        for field, value in answers.items():
            setattr(case, field, value)
        case.category = category if case.category == "other" else case.category
        case.ilo_indicators = sorted(set(case.ilo_indicators or []) | set(indicators))
        if urgency == "high" and case.urgency == "normal":
            repo.change_urgency(turn.session, case=case, urgency="high", actor="bot")
        secret = None
    else:
        case, secret = repo.create_case(
            turn.session,
            contact=contact,
            category=category,
            urgency=urgency,
            language=turn.language,
            country=country,
            channel=turn.channel,
            ilo_indicators=indicators,
            **answers,
        )
        turn.set("case_ref", case.reference)
    if secret:
        turn.say(m.CASE_FILED, case_ref=case.reference, secret=secret)
    if not quiet:
        turn.say(m.CASE_NEXT)
    turn.record(case, history=True)
    if urgency in ("immediate", "high"):
        alert(turn, case, "case_filed")
    clear_intake(turn)
    if not quiet and turn.channel == "whatsapp" and contact.sms_fallback is None:
        # A caseworker's answer may come after WhatsApp's 24-hour window has closed: may it
        # come by SMS then (bot/channels/inbox.py)? Asked once, on WhatsApp only.
        turn.say(m.ASK_SMS_FALLBACK)
        turn.set("awaiting", "sms_fallback")


def clear_intake(turn: Turn, awaiting: bool = False) -> None:
    """The report's slots emptied; with ``awaiting``, the question the bot asked stays open."""
    for slot in (*INTAKE_SLOTS, "intake_cancelled", "intake_case", "requested_slot"):
        if turn.tracker.get_slot(slot) is not None:
            turn.set(slot, None)
    if not awaiting:
        turn.set("awaiting", None)


# --- case status -------------------------------------------------------------------------------
def tell_status(turn: Turn, case: Case) -> None:
    turn.say(m.STATUS_MESSAGES[case.status], case_ref=case.reference)
    turn.say(m.STATUS_UPDATED, date=format_date(turn.language, case.updated_at))
    turn.set("awaiting", None)
    turn.set("pending_ref", None)


def case_status(turn: Turn, reference: str | None = None) -> None:
    reference = reference or turn.entity("case_ref")
    contact = turn.contact()
    if reference:
        case = repo.case_for_worker(turn.session, reference=reference, contact=contact)
        if case is not None:
            tell_status(turn, case)
            return
        # Maybe filed from another phone or channel: only with the secret. Never say whether
        # the reference exists before the secret is right.
        pending = taxonomy.normalize_case_ref(reference) or reference
        if repo.reference_locked(turn.session, reference=pending):
            say_locked(turn)
            return
        turn.set("pending_ref", pending)
        turn.say(m.ASK_SECRET, case_ref=pending)
        turn.set("awaiting", "secret")
        return
    case = repo.latest_case(turn.session, contact=contact) if contact is not None else None
    if case is not None:
        tell_status(turn, case)
        return
    turn.say(m.ASK_CASE_REF)
    turn.set("awaiting", "case_ref")


def check_secret(turn: Turn) -> None:
    """The secret of a case asked about from another phone or channel: counted and locked per
    reference in the store (``repository.case_by_secret``). What the worker typed is masked
    where it is stored. Right, the case's status, and the case links this contact (an erasure
    from either reaches both); wrong, the same answer whether or not the case exists."""
    reference = turn.slot("pending_ref")
    typed = turn.stored_message(turn.contact())
    if typed is not None:
        typed.text = repo.SECRET_MASK
    case, outcome = None, "wrong"
    if reference:
        case, outcome = repo.case_by_secret(turn.session, reference=reference, secret=turn.choice)
    if case is not None:
        turn.contact(create=True)
        tell_status(turn, case)
        turn.record(case)
        return
    if outcome == "locked_now":
        lockout_alert(turn, reference)
    if outcome in ("locked", "locked_now"):
        say_locked(turn)
        return
    turn.say(m.CASE_NOT_FOUND)
    turn.say(m.MENU_HINT)
    turn.set("awaiting", None)
    turn.set("pending_ref", None)


def say_locked(turn: Turn) -> None:
    turn.say(m.SECRET_LOCKED)
    turn.set("awaiting", None)
    if turn.slot("pending_ref") is not None:
        turn.set("pending_ref", None)


def lockout_alert(turn: Turn, reference: str) -> None:
    """Caseworkers are told that a reference was locked: with the case when it exists (so they
    may warn the worker), never the secrets that were tried."""
    case = repo.find_case(turn.session, reference=reference)
    if case is not None:
        alert(turn, case, "secret_lockout", via=turn.channel)
    else:
        turn.services.notifier.alert(
            {"reason": "secret_lockout", "case_ref": None, "via": turn.channel}
        )


# --- emergency and hand-off --------------------------------------------------------------------
def alert(turn: Turn, case: Case, reason: str, **extra: Any) -> None:
    turn.services.notifier.alert(
        {
            **extra,
            "reason": reason,
            "case_ref": case.reference,
            "urgency": case.urgency,
            "category": case.category,
            "language": case.language,
            "country": case.country,
            "channel": case.channel,
            "handoff": bool(case.handoff),
        }
    )


def open_case_for_a_person(turn: Turn, *, urgency: str) -> tuple[Case, str | None]:
    """The worker's open case (this conversation's, else their latest), or a new one, marked
    for a person; with the new case's secret, None for an existing case."""
    contact = turn.contact(create=True)
    case = turn.current_case() or repo.latest_case(turn.session, contact=contact)
    secret = None
    if case is None or case.status in ("resolved", "closed"):
        case, secret = repo.create_case(
            turn.session,
            contact=contact,
            category="other",
            urgency=urgency,
            language=turn.language,
            country=turn.destination,
            channel=turn.channel,
        )
    case.handoff = True
    turn.set("case_ref", case.reference)
    return case, secret


def emergency(turn: Turn) -> None:
    """Raise (or open) the case to immediate, flag it, answer at once for the kind of danger,
    tell the caseworkers (the kind, never the worker's words)."""
    kind = turn.danger_kind or UNSPECIFIED
    flagged = turn.flagged()
    already = flagged is not None and bool(flagged.handoff) and flagged.danger_kind == kind
    case, secret = open_case_for_a_person(turn, urgency="immediate")
    repo.flag_danger(turn.session, case=case, kind=kind)
    if (turn.tracker.active_loop or {}).get("name") == "grievance_form":
        turn.set("intake_case", case.reference)  # the report being filled in completes it
    if already:
        # The same danger again before a person answered: short, and the lines once more.
        if kind == "suicide":
            say_crisis_lines(turn)
        turn.say(m.HOLDING_SUICIDE if kind == "suicide" else m.HOLDING)
    else:
        if kind == "suicide":
            turn.say(m.EMERGENCY_SUICIDE)
            say_crisis_lines(turn)
        else:
            turn.say(m.EMERGENCY_BY_KIND.get(kind, m.EMERGENCY))
            say_emergency_contacts(turn)
        if secret:
            turn.say(m.CASE_FILED, case_ref=case.reference, secret=secret)
        if kind != "third_party":  # the last line: the question the worker answers
            turn.say(m.ASK_SAFE_NOW)
    turn.set("awaiting", "safe")
    if turn.intent in RIGHTS_TOPICS and not already and kind != "suicide":
        # a rights question that raised the alarm ("boss keeps my passport, won't give it back"):
        # answered if the worker says they are safe, so a false alarm costs them no answer (never
        # after words of suicide: a fee rule is no answer to that)
        turn.set("danger_topic", turn.intent)
    if turn.tracker.get_slot("danger_signal"):
        turn.set("danger_signal", None)
    turn.record(case, history=True)
    alert(turn, case, "emergency", danger_kind=kind)


def say_emergency_contacts(turn: Turn) -> None:
    contacts = turn.services.contacts.get(turn.destination or "", [])
    if contacts:
        lines = [turn.t(m.EMERGENCY_CONTACTS, country=country_name(turn, turn.destination))]
        lines += [f"{c.number} {c.name}" for c in contacts]
        turn.send("\n".join(lines))
    else:
        turn.say(m.EMERGENCY_NO_CONTACTS)


def say_crisis_lines(turn: Turn) -> None:
    """The destination country's crisis lines from configuration (bot/data/crisis_lines.yml),
    never invented; without any, to stay with someone they trust."""
    lines = turn.services.crisis_lines.get(turn.destination or "", [])
    if lines:
        turn.send("\n".join([turn.t(m.CRISIS_LINES)] + [f"{c.number} {c.name}" for c in lines]))
    else:
        turn.say(m.CRISIS_NO_LINE)


def hold(turn: Turn, case: Case) -> None:
    """A worker in danger writes again before a person has answered: never silence. They can say
    they are safe (the bot talks again; the case stays flagged for a person), say they are not,
    or ask for the crisis line again; anything else gets a short, kind holding message."""
    turn.record(case)
    kind = case.danger_kind
    if turn.choice == YES or (turn.choice is None and turn.sure_yes):
        repo.worker_says_safe(turn.session, case=case)
        turn.say(m.SAFE_NOW)
        turn.set("awaiting", None)
        alert(turn, case, "worker_says_safe", danger_kind=kind)
        topic = turn.slot("danger_topic")
        if topic in RIGHTS_TOPICS:
            turn.set("danger_topic", None)
            rights_answer(turn, topic)
    elif turn.choice == NO or (turn.choice is None and turn.no):
        turn.say(m.NOT_SAFE)
        if kind == "suicide":
            say_crisis_lines(turn)
        else:
            say_emergency_contacts(turn)
        turn.set("awaiting", "safe")
        alert(turn, case, "worker_not_safe", danger_kind=kind)
    elif turn.choice == "3" or (turn.choice is None and turn.intent == "human_handoff"):
        if kind == "suicide":
            say_crisis_lines(turn)
        else:
            say_emergency_contacts(turn)
        turn.say(m.HOLDING_SUICIDE if kind == "suicide" else m.HOLDING)
    else:
        turn.say(m.HOLDING_SUICIDE if kind == "suicide" else m.HOLDING)
    turn.record(case)


def handoff(turn: Turn) -> None:
    case, _ = open_case_for_a_person(turn, urgency="normal")
    turn.set("awaiting", None)
    turn.say(m.HANDOFF, hours=turn.services.handoff_hours)
    turn.record(case, history=True)
    alert(turn, case, "handoff")


# --- erasure -----------------------------------------------------------------------------------
def ask_erase(turn: Turn) -> None:
    turn.say(m.ERASE_CONFIRM)
    turn.set("awaiting", "erase")


def asks_erasure(turn: Turn) -> bool:
    """The erase command, or the answer to the question it just asked: never held back by a
    hand-off or an emergency (``actions.HelplineAction``), a worker may need everything gone at
    once. Only the answer right after the question counts there: a "1" later in a hand-off may
    answer a person, or say "I am safe"."""
    if turn.command == "erase":
        return True
    return (
        turn.slot("awaiting") == "erase"
        and (turn.sure_yes or turn.no)
        and asked_last(turn) == "erase"
    )


def asked_last(turn: Turn) -> str | None:
    """What the bot's answer to the worker's previous message asked (``awaiting``), if it asked."""
    current = False
    for event in reversed(turn.tracker.events):
        if event.get("event") == "user":
            if current:
                return None
            current = True
        elif current and event.get("event") == "slot" and event.get("name") == "awaiting":
            return event.get("value")
    return None


def erase(turn: Turn) -> None:
    """Everything of the worker goes (``repository.erase_contact``: their contacts on every
    channel their cases link), Twilio's copies too; the answer says what we cannot reach."""
    contact = turn.contact()
    twilio: list[str] = []
    if contact is not None:
        twilio = repo.erase_contact(turn.session, contact=contact, actor="worker")["twilio"]
    delete_at_twilio(twilio)
    turn._contact = None  # nothing more of this turn is written about them
    turn.say(m.ERASE_DONE)
    turn.say(m.ERASE_NOT_REACHED)
    language = turn.language
    # The tracker store (bot.tracker_store) deletes this conversation's stored events when it
    # sees ``erased``; the language is kept so the worker is still answered in it.
    turn.events = [SlotSet("erased", True), SlotSet("language", language)]
    turn._slots.clear()


def delete_at_twilio(sids: list[str]) -> threading.Thread | None:
    """Twilio keeps a copy of every message it carried: deleted through its API in the
    background (Twilio refuses for a minute or so after a message; the worker's answer does not
    wait). Nothing happens where Twilio is not configured; what the account refuses stays
    there (logged as a count)."""
    from bot.channels import config as channel_config

    settings = channel_config.load()
    if not sids or not settings.twilio_on:
        return None
    from bot.channels.twilio import TwilioSender

    thread = threading.Thread(
        target=TwilioSender(settings).delete_stored, args=(sids,), name="twilio-erase", daemon=True
    )
    thread.start()
    return thread


# --- reading a reply against what the bot asked -----------------------------------------------
def resolve_context(turn: Turn) -> bool:
    """Handles the message as the answer to the bot's last question; False if it is not one."""
    awaiting = turn.slot("awaiting")
    if turn.command == "erase":
        ask_erase(turn)
        return True
    if turn.command == "media":  # a photo, voice note or document without words
        turn.say(m.MEDIA_RECEIVED)
        return True
    if turn.choice == "0":
        show_menu(turn)
        return True
    option = MENU_OPTIONS.get(turn.choice or "") if awaiting == "menu" else None
    if option and (option != "quick_exit" or turn.channel == "telegram"):
        return menu_option(turn, option)
    if awaiting == "sms_fallback" and (turn.sure_yes or turn.no):
        contact = turn.contact()
        if contact is not None:
            contact.sms_fallback = bool(turn.sure_yes)
        turn.say(m.OK)
        turn.say(m.MENU_HINT)
        turn.set("awaiting", None)
        return True
    if awaiting == "language":
        if turn.choice:
            options = language_options(turn)
            index = int(turn.choice) - 1
            if 0 <= index < len(options):
                set_language(turn, options[index])
                return True
        code = turn.entity("language")
        if code in language_options(turn):
            set_language(turn, code)
            return True
    if awaiting == "country":
        country = country_from_answer(turn)
        if country:
            turn.set("country", country)
            contact = turn.contact()
            if contact is not None and country != OTHER_COUNTRY:
                contact.country = country
            topic = turn.slot("topic")
            if topic:
                rights_answer(turn, topic)
            else:
                show_menu(turn)
            return True
    if awaiting == "offer":
        if turn.yes:
            start_report(turn, turn.slot("topic"))
            return True
        if turn.choice == NO:
            answer_source(turn)
            return True
        if turn.intent == "deny":
            turn.say(m.OK)
            turn.say(m.MENU_HINT)
            turn.set("awaiting", None)
            return True
    if awaiting == "erase":
        if turn.sure_yes:
            erase(turn)
            return True
        if turn.no:
            turn.say(m.ERASE_CANCELLED)
            turn.say(m.MENU_HINT)
            turn.set("awaiting", None)
            return True
    if awaiting == "secret" and turn.choice:
        check_secret(turn)
        return True
    if awaiting == "case_ref" and (turn.entity("case_ref") or turn.choice):
        reference = turn.entity("case_ref") or f"HX-{turn.choice}"
        case_status(turn, reference)
        return True
    return False


def menu_option(turn: Turn, option: str) -> bool:
    turn.set("awaiting", None)
    if option == "ask":
        turn.say(m.ASK_QUESTION)
    elif option == "report":
        start_report(turn)
    elif option == "status":
        case_status(turn)
    elif option == "handoff":
        handoff(turn)
    elif option == "language":
        ask_language(turn)
    elif option == "erase":
        ask_erase(turn)
    elif option == "quick_exit":
        # The channel deletes the chat's messages and leaves a neutral reply; nothing is said.
        turn.dispatcher.utter_message(json_message=QUICK_EXIT)
    return True


def route(turn: Turn) -> None:
    """help, affirm, deny, thank, goodbye, out_of_scope and low confidence, outside a question."""
    intent = turn.intent
    if intent == "thank":
        turn.say(m.WELCOME)
        turn.set("awaiting", None)
    elif intent == "goodbye":
        turn.say(m.GOODBYE)
        turn.set("awaiting", None)
    elif intent == "out_of_scope":
        turn.say(m.OUT_OF_SCOPE)
        say_menu(turn)
    elif intent == "help" and not turn.choice and not turn.command:
        show_menu(turn)
    elif intent in ("affirm", "deny"):
        turn.say(m.OK)
        turn.say(m.MENU_HINT)
        turn.set("awaiting", None)
    else:  # nlu_fallback, a number that answers nothing, a command out of place
        not_understood(turn)
