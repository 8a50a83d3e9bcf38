"""Action tests: real actions, a real SQLite case store, trackers as Rasa sends them.

Each test asserts the whole list of events an action returns and what it said, in the worker's
language (the real catalogues), and what it wrote to the store.
"""

from __future__ import annotations

import asyncio
import uuid

from rasa_sdk import Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import actions as a
from actions import messages as m
from actions.form import ValidateGrievanceForm, intake_slots
from bot.i18n import Translations
from bot.store import repository as repo
from bot.store.models import Case, Contact, Message

T = Translations()


def tracker(
    text: str,
    intent: str,
    *,
    sender: str = "worker-1",
    slots: dict | None = None,
    entities: list[dict] | None = None,
    confidence: float = 0.9,
    ranking: list[dict] | None = None,
    history: list[dict] | None = None,
    channel: str = "rest",
    **extra,
) -> Tracker:
    message = {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "intent_ranking": ranking or [{"name": intent, "confidence": confidence}],
        "entities": entities or [],
        **extra,
    }
    events = list(history or []) + [
        {
            "event": "user",
            "text": text,
            "parse_data": message,
            "message_id": uuid.uuid4().hex,
            "input_channel": channel,
        }
    ]
    return Tracker(
        sender,
        {"language": "en", **(slots or {})},
        message,
        events,
        False,
        None,
        {},
        "action_listen",
    )


def run(action, t: Tracker) -> tuple[list[dict], list[str]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, {}))
    return events, [msg["text"] for msg in dispatcher.messages]


def test_greeting_shows_the_menu_in_the_workers_language(services):
    events, said = run(a.ActionGreet(), tracker("নমস্কার", "greet", slots={"language": "bn"}))
    assert events == [SlotSet("awaiting", "menu")]
    assert said == [T.text("bn", m.GREETING), T.text("bn", m.MENU)]
    assert said[1] != m.MENU  # really Bengali


def test_menu_number_2_starts_the_report_form(services):
    events, said = run(
        a.ActionRoute(),
        tracker("2", "help", confidence=1.0, choice="2", slots={"awaiting": "menu"}),
    )
    assert events == [
        SlotSet("awaiting", None),
        SlotSet("intake_cancelled", None),
        SlotSet("awaiting", None),
        FollowupAction("grievance_form"),
    ]
    assert said == [T.text("en", m.INTAKE_PRIVACY)]


def test_a_number_that_answers_nothing_is_not_guessed(services):
    events, said = run(a.ActionRoute(), tracker("7", "help", choice="7"))
    assert events == [SlotSet("awaiting", "menu")]
    assert said == [T.text("en", m.NOT_UNDERSTOOD), T.text("en", m.MENU)]


def test_rights_question_without_country_asks_once_then_answers(services):
    events, said = run(a.ActionRightsAnswer(), tracker("agent took money", "fees"))
    assert events == [SlotSet("topic", "fees"), SlotSet("awaiting", "country")]
    assert said[0].startswith(T.text("en", m.ASK_COUNTRY))
    assert "1 Malaysia" in said[0] and "7 Other country" in said[0]

    # "৩" was made "3" by the normaliser: Hong Kong, in Bengali.
    events, said = run(
        a.ActionRoute(),
        tracker(
            "3",
            "help",
            choice="3",
            slots={"awaiting": "country", "topic": "fees", "language": "bn"},
        ),
    )
    assert events == [
        SlotSet("country", "HK"),
        SlotSet("topic", "fees"),
        SlotSet("awaiting", "offer"),
    ]
    hk = services.rights.answer("bn", "fees", "HK")
    assert said == [hk.text, T.text("bn", m.ANSWER_OFFER)]
    assert "10%" in hk.text


def test_rights_answer_for_two_countries_differs_and_general_is_labelled(services):
    _, my = run(a.ActionRightsAnswer(), tracker("passport", "documents", slots={"country": "MY"}))
    _, sg = run(a.ActionRightsAnswer(), tracker("passport", "documents", slots={"country": "SG"}))
    assert my[0] == services.rights.answer("en", "documents", "MY").text
    assert sg[0] == services.rights.answer("en", "documents", "SG").text
    assert my[0] != sg[0]
    _, sa = run(a.ActionRightsAnswer(), tracker("passport", "documents", slots={"country": "SA"}))
    assert sa[0] == T.text("en", m.GENERAL_ANSWER, country="Saudi Arabia")
    assert sa[1] == services.rights.answer("en", "documents", None).text


def test_answer_source_and_date_on_request(services):
    events, said = run(
        a.ActionRoute(),
        tracker(
            "2",
            "help",
            choice="2",
            slots={"awaiting": "offer", "topic": "hours", "country": "TH", "language": "th"},
        ),
    )
    answer = services.rights.answer("th", "hours", "TH")
    assert said[0] == T.text("th", m.ANSWER_SOURCE, source=answer.source, date="23 พ.ย. 2569")
    assert events == [SlotSet("awaiting", "offer")]


def test_yes_after_an_answer_reports_with_its_topic(services):
    events, _ = run(
        a.ActionRoute(), tracker("yes", "affirm", slots={"awaiting": "offer", "topic": "wages"})
    )
    assert SlotSet("topic", "wages") in events
    assert events[-1] == FollowupAction("grievance_form")


FULL_INTAKE = {
    "intake_what": "boss keeps my passport and 3 months no salary",
    "intake_city": "Johor Bahru",
    "intake_workplace": "-",
    "intake_who": "employer",
    "intake_when": "since March",
    "intake_workers": 12,
    "intake_fees": "-",
    "intake_wages": "RM 4,500",
    "intake_identify": False,
    "intake_consent_ngo": True,
    "intake_consent_authorities": False,
    "intake_consent_employer": False,
    "intake_safe_contact": "after 9 pm, this chat",
}


def _history(*turns: tuple[str, str]) -> list[dict]:
    events = [{"event": "active_loop", "name": "grievance_form"}]
    for text, intent in turns:
        events.append(
            {
                "event": "user",
                "text": text,
                "message_id": uuid.uuid4().hex,
                "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "language": "en"},
            }
        )
        events.append({"event": "bot", "text": "next question"})
    return events


def test_filing_stores_category_urgency_indicators_and_transcript(services):
    history = _history(
        ("boss keeps my passport and 3 months no salary", "documents"),
        ("he says he will beat me if I leave", "abuse"),
        ("Johor Bahru", "out_of_scope"),
    )
    slots = {**FULL_INTAKE, "country": "MY", "topic": None}
    events, said = run(
        a.ActionFileCase(),
        tracker("after 9 pm, this chat", "out_of_scope", slots=slots, history=history),
    )
    with services.database.session() as s:
        case = s.query(Case).one()
        assert case.category == "documents"
        assert case.urgency == "high"  # documents held together with threats
        assert case.ilo_indicators == ["intimidation_threats", "retention_of_documents"]
        assert (case.country, case.language, case.channel) == ("MY", "en", "rest")
        assert case.what_happened == FULL_INTAKE["intake_what"]
        assert case.workplace is None and case.workers_affected == 12
        assert (case.consent_ngo, case.consent_authorities, case.may_identify) == (
            True,
            False,
            False,
        )
        transcript = [(msg.direction, msg.text) for msg in case.messages]
        assert ("in", "he says he will beat me if I leave") in transcript
        assert transcript[-1] == ("out", T.text("en", m.CASE_NEXT))
        reference = case.reference
    assert said[0].startswith(f"Your case number is {reference}. Your secret code is ")
    assert SlotSet("case_ref", reference) in events
    assert SlotSet("intake_what", None) in events and events[-1] == SlotSet("awaiting", None)
    assert services.notifier.alerts[-1]["case_ref"] == reference
    assert "passport" not in str(services.notifier.alerts)  # no words of the worker in alerts


def test_cancelled_intake_opens_no_case(services):
    events, said = run(
        a.ActionFileCase(),
        tracker(
            "cancel", "help", command="cancel", slots={"intake_cancelled": True, "intake_what": "x"}
        ),
    )
    assert said == [T.text("en", m.INTAKE_CANCELLED)]
    assert events == [
        SlotSet("intake_what", None),
        SlotSet("intake_cancelled", None),
        SlotSet("awaiting", None),
    ]
    with services.database.session() as s:
        assert s.query(Case).count() == 0


def _file(services, sender="worker-1", language="en") -> tuple[str, str]:
    _, said = run(
        a.ActionFileCase(),
        tracker(
            "x",
            "out_of_scope",
            sender=sender,
            slots={**FULL_INTAKE, "language": language, "topic": "documents"},
        ),
    )
    with services.database.session() as s:
        case = s.query(Case).order_by(Case.id.desc()).first()
    secret = said[0].split("secret code is ")[1][: repo.SECRET_DIGITS]
    return case.reference, secret


def test_case_status_from_the_same_phone_and_from_another_with_the_secret(services):
    reference, secret = _file(services)
    _, said = run(a.ActionCaseStatus(), tracker("any news", "case_status"))
    assert said[0] == T.text("en", m.STATUS_NEW, case_ref=reference)

    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        repo.change_status(s, case=case, status="in_progress", actor="caseworker")

    # Another phone: the reference alone says nothing, not even whether it exists.
    events, said = run(
        a.ActionCaseStatus(),
        tracker(f"status {reference}", "case_status", sender="other-phone",
                entities=[{"entity": "case_ref", "value": reference}]),
    )  # fmt: skip
    assert said == [T.text("en", m.ASK_SECRET, case_ref=reference)]
    assert events == [SlotSet("pending_ref", reference), SlotSet("awaiting", "secret")]
    waiting = {"awaiting": "secret", "pending_ref": reference, "language": "vi"}
    wrong = "0000" if secret != "0000" else "1111"
    events, said = run(
        a.ActionRoute(), tracker(wrong, "help", sender="other-phone", choice=wrong, slots=waiting)
    )
    assert said[0] == T.text("vi", m.CASE_NOT_FOUND)
    assert events == [SlotSet("awaiting", None), SlotSet("pending_ref", None)]
    _, said = run(
        a.ActionRoute(), tracker(secret, "help", sender="other-phone", choice=secret, slots=waiting)
    )
    assert said[0] == T.text("vi", m.STATUS_IN_PROGRESS, case_ref=reference)


def test_emergency_raises_to_immediate_gives_configured_contacts_and_alerts(services):
    reference, _ = _file(services)
    events, said = run(
        a.ActionEmergency(),
        tracker(
            "they locked us in, help", "emergency", slots={"country": "HK", "case_ref": reference}
        ),
    )
    assert said[0] == T.text("en", m.EMERGENCY)
    assert said[1].splitlines() == [
        "Help in Hong Kong:",
        "999 Police emergency",
        "2157 9537 Labour Department foreign domestic helper hotline (24 h)",
    ]
    assert said[2] == T.text("en", m.ASK_SAFE_NOW)
    assert events == [SlotSet("case_ref", reference), SlotSet("awaiting", "safe")]
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        assert (case.urgency, case.handoff, case.danger_kind) == ("immediate", True, "unspecified")
    assert services.notifier.alerts[-1] == {
        "reason": "emergency", "case_ref": reference, "urgency": "immediate",
        "category": "documents", "language": "en", "country": None, "channel": "rest",
        "handoff": True, "danger_kind": "unspecified",
    }  # fmt: skip


def test_emergency_without_contacts_for_the_country_invents_none(services):
    _, said = run(a.ActionEmergency(), tracker("help me", "emergency", slots={"country": "MY"}))
    assert said[1] == T.text("en", m.EMERGENCY_NO_CONTACTS)
    assert not any(ch.isdigit() for ch in said[1])
    assert said[2].startswith("Your case number is HX-")


def test_danger_inside_another_message_is_an_emergency(services):
    ranking = [{"name": "abuse", "confidence": 0.5}, {"name": "emergency", "confidence": 0.45}]
    _, said = run(
        a.ActionRightsAnswer(),
        tracker("boss beat me, he is coming back", "abuse", confidence=0.5, ranking=ranking),
    )
    assert said[0] == T.text("en", m.EMERGENCY)


def test_handoff_then_quiet_until_released_except_emergencies(services):
    events, said = run(a.ActionHandoff(), tracker("real person please", "human_handoff"))
    assert said == [T.text("en", m.HANDOFF, hours=24)]
    reference = events[0]["value"]
    assert services.notifier.alerts[-1]["reason"] == "handoff"

    events, said = run(a.ActionRightsAnswer(), tracker("what about my salary", "wages"))
    assert (events, said) == ([], [])
    with services.database.session() as s:
        texts = [msg.text for msg in repo.find_case(s, reference=reference).messages]
    assert "what about my salary" in texts  # the caseworker sees it

    _, said = run(a.ActionEmergency(), tracker("they are hitting me now", "emergency"))
    assert said[0] == T.text("en", m.EMERGENCY)

    with services.database.session() as s:
        repo.find_case(s, reference=reference).handoff = False  # a caseworker releases it
    _, said = run(a.ActionGreet(), tracker("hello", "greet"))
    assert said[0] == T.text("en", m.GREETING)


def test_erasure_after_confirmation(services):
    reference, _ = _file(services)
    events, said = run(a.ActionRoute(), tracker("delete my data", "help", command="erase"))
    assert said == [T.text("en", m.ERASE_CONFIRM)]
    assert events == [SlotSet("awaiting", "erase")]

    events, said = run(
        a.ActionRoute(), tracker("2", "help", choice="2", slots={"awaiting": "erase"})
    )
    assert said == [T.text("en", m.ERASE_CANCELLED), T.text("en", m.MENU_HINT)]

    # Noise that looks like a weak "yes" erases nothing.
    _, said = run(
        a.ActionRoute(), tracker("???", "affirm", confidence=0.53, slots={"awaiting": "erase"})
    )
    assert said == [T.text("en", m.OK), T.text("en", m.MENU_HINT)]

    events, said = run(
        a.ActionRoute(),
        tracker("1", "help", choice="1", slots={"awaiting": "erase", "language": "ne"}),
    )
    assert said == [T.text("ne", m.ERASE_DONE), T.text("ne", m.ERASE_NOT_REACHED)]
    assert events == [SlotSet("erased", True), SlotSet("language", "ne")]
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        assert case.contact is None and case.what_happened is None
        assert case.category == "documents"  # the anonymous count survives
        # Only the keyed hashes of the worker's message ids stay (no text, contact or case).
        assert s.query(Message).filter(Message.status != "erased").count() == 0
        assert {(m.text, m.contact_id, m.case_id) for m in s.query(Message)} == {(None, None, None)}


def test_form_reads_skip_cancel_yes_no_and_numbers(services):
    form = ValidateGrievanceForm()

    def answer(slot, text, intent="out_of_scope", **extra):
        t = tracker(text, intent, slots={"requested_slot": slot}, **extra)
        return asyncio.run(form.validate_answer(slot, CollectingDispatcher(), t))

    assert answer("intake_city", "Penang") == {"intake_city": "Penang"}
    assert answer("intake_city", "skip", "help", command="skip") == {"intake_city": "-"}
    assert answer("intake_who", "cancel", "help", command="cancel") == {
        "intake_who": "-",
        "intake_cancelled": True,
    }
    assert answer("intake_consent_ngo", "1", "help", choice="1") == {"intake_consent_ngo": True}
    assert answer("intake_consent_ngo", "no", "deny", confidence=0.95) == {
        "intake_consent_ngo": False
    }
    # Noise that looks like a weak "yes" never gives consent.
    assert answer("intake_consent_employer", "???", "affirm", confidence=0.53) == {
        "intake_consent_employer": None
    }
    assert answer("intake_consent_ngo", "maybe") == {"intake_consent_ngo": None}
    assert answer("intake_workers", "about 30 people") == {"intake_workers": 30}
    assert answer("intake_country", "4", "help", choice="4") == {
        "intake_country": "SG",
        "country": "SG",
    }
    # Nothing to read (the normalizer leaves no text): no answer, the question comes again.
    assert answer("intake_what", "") == {"intake_what": None}
    assert answer("intake_country", "  ") == {"intake_country": None}
    assert answer("intake_city", " Penang port ") == {"intake_city": "Penang port"}


def test_form_questions_depend_on_topic_and_country():
    def slots(**values):
        return intake_slots(Tracker("s", values, {}, [], False, None, {}, None))

    assert "intake_fees" in slots(topic="fees") and "intake_wages" not in slots(topic="fees")
    assert "intake_country" not in slots(country="MY")
    assert slots(intake_cancelled=True) == []


def test_emergency_during_the_report_is_completed_by_it_and_a_later_report_is_new(services):
    form = ValidateGrievanceForm()
    t = tracker(
        "they locked the door, we cannot go out",
        "emergency",
        confidence=0.8,
        slots={"requested_slot": "intake_what", "country": "TW"},
    )
    t.active_loop = {"name": "grievance_form"}
    dispatcher = CollectingDispatcher()
    # rasa_sdk asks for the questions before and after validating, in one action call: the
    # hand-off read before the answer is not kept after an emergency in it.
    assert asyncio.run(form.required_slots([], dispatcher, t, {}))
    updates = asyncio.run(form.validate_answer("intake_what", dispatcher, t))
    assert asyncio.run(form.required_slots([], dispatcher, t, {})) == []
    assert dispatcher.messages[0]["text"] == T.text("en", m.EMERGENCY)
    assert "1955 Ministry of Labour hotline" in dispatcher.messages[1]["text"]
    reference = updates["intake_case"]
    assert updates["intake_what"] == "they locked the door, we cannot go out"
    assert updates["case_ref"] == reference

    # The form ends (a person has taken over); what was collected completes the same case.
    slots = {**FULL_INTAKE, **updates, "topic": "hours"}
    events, said = run(a.ActionFileCase(), tracker("x", "out_of_scope", slots=slots))
    assert said == []  # quiet: a person has taken over
    with services.database.session() as s:
        assert s.query(Case).count() == 1
        case = repo.find_case(s, reference=reference)
        assert (case.urgency, case.category, case.city) == ("immediate", "hours", "Johor Bahru")

    # Released by a caseworker; a new report later is a new case, the old one is untouched.
    with services.database.session() as s:
        repo.release_handoff(s, case=repo.find_case(s, reference=reference), actor="cw")
    slots = {**FULL_INTAKE, "intake_city": "Taipei", "case_ref": reference, "topic": "wages"}
    _, said = run(a.ActionFileCase(), tracker("x", "out_of_scope", slots=slots))
    assert said[0].startswith("Your case number is HX-")
    with services.database.session() as s:
        assert s.query(Case).count() == 2
        assert repo.find_case(s, reference=reference).city == "Johor Bahru"


def test_a_file_without_words_is_acknowledged_in_the_workers_language(services):
    events, said = run(
        a.ActionRoute(), tracker("[photo]", "help", command="media", slots={"language": "my"})
    )
    assert said == [T.text("my", m.MEDIA_RECEIVED)] and events == []


def test_on_telegram_the_menu_offers_the_quick_exit(services):
    _, said = run(a.ActionGreet(), tracker("hi", "greet", channel="telegram"))
    assert said == [T.text("en", m.GREETING), T.text("en", m.MENU_TELEGRAM)]
    assert said[1].splitlines()[-1] == "7 Clear this chat now"
    _, said = run(a.ActionGreet(), tracker("hi", "greet", channel="sms", sender="worker-2"))
    assert said[1] == T.text("en", m.MENU)  # SMS cannot delete messages from a phone


def test_menu_7_asks_telegram_for_a_quick_exit_and_says_nothing(services):
    dispatcher = CollectingDispatcher()
    t = tracker("7", "help", confidence=1.0, choice="7", slots={"awaiting": "menu"},
                channel="telegram")  # fmt: skip
    events = asyncio.run(a.ActionRoute().run(dispatcher, t, {}))
    assert dispatcher.messages == [
        {**dispatcher.messages[0], "custom": {"helpline": "quick_exit"}, "text": None}
    ]
    assert events == [SlotSet("awaiting", None)]
    # Elsewhere 7 is no option: it is not guessed.
    _, said = run(a.ActionRoute(), tracker("7", "help", confidence=1.0, choice="7",
                                           slots={"awaiting": "menu"}, channel="sms"))  # fmt: skip
    assert said == [T.text("en", m.NOT_UNDERSTOOD), T.text("en", m.MENU)]


def test_on_whatsapp_filing_asks_once_whether_sms_may_reach_the_worker(services):
    slots = {**FULL_INTAKE, "country": "MY", "topic": "wages", "language": "id"}
    t = tracker("malam", "out_of_scope", slots=slots, channel="whatsapp", sender="wa-1")
    events, said = run(a.ActionFileCase(), t)
    assert said[-1] == T.text("id", m.ASK_SMS_FALLBACK) and said[-1] != m.ASK_SMS_FALLBACK
    assert events[-1] == SlotSet("awaiting", "sms_fallback")
    events, said = run(a.ActionRoute(), tracker(
        "1", "help", confidence=1.0, choice="1", channel="whatsapp", sender="wa-1",
        slots={"awaiting": "sms_fallback", "language": "id"},
    ))  # fmt: skip
    assert said == [T.text("id", m.OK), T.text("id", m.MENU_HINT)]
    with services.database.session() as s:
        (contact,) = s.query(Contact).filter(Contact.channel == "whatsapp")
        assert contact.sms_fallback is True and contact.language == "id"
    # Asked once: the next report on WhatsApp does not ask again.
    _, said = run(a.ActionFileCase(), tracker("x", "out_of_scope", slots=slots,
                                              channel="whatsapp", sender="wa-1"))  # fmt: skip
    assert T.text("id", m.ASK_SMS_FALLBACK) not in said
    # Not on other channels.
    _, said = run(a.ActionFileCase(), tracker("x", "out_of_scope", slots=slots, channel="sms",
                                              sender="sms-1"))  # fmt: skip
    assert T.text("id", m.ASK_SMS_FALLBACK) not in said
