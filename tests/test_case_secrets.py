"""Case secrets and erasure (issue 12): real actions on a real SQLite case store; the channels'
queue with the real provider clients talking to fake Telegram and Twilio servers on loopback.

- Status from another phone: 6-digit secrets (old 4-digit ones still work); wrong secrets counted
  per reference in the store, whatever the sender id; locked after five, caseworkers alerted; the
  same answers and the same scrypt work whether or not the reference exists.
- The secret is never kept in clear in the transcript: the reply that gave it and the message
  that typed it are masked; the worker still gets the real code.
- Erasure is never held back by a hand-off or an emergency.
- Erasure reaches every contact a case links, keeps provider ids only as keyed hashes (a replay
  stays a duplicate), deletes Twilio's copies, and tells the worker what it cannot reach.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import actions as a
from actions import messages as m
from bot import locale_packs
from bot.channels import config as channel_config
from bot.channels.inbox import Inbound, Inbox
from bot.channels.telegram import TelegramSender
from bot.channels.twilio import TwilioSender
from bot.store import repository as repo
from bot.store.models import Case, Contact, Message, ReferenceAttempt
from tests.fake_providers import FakeTelegram, FakeTwilio, twilio_error
from tests.test_actions import FULL_INTAKE, T, _file, run, tracker

TWILIO_ENV = {
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_SMS_NUMBER": "+15550001111",
}


def status_from(sender: str, reference: str, secret: str, language: str = "en") -> list[str]:
    """Another phone asks for a case's status, then types a secret: what it is told."""
    _, asked = run(
        a.ActionCaseStatus(),
        tracker(f"status {reference}", "case_status", sender=sender, slots={"language": language},
                entities=[{"entity": "case_ref", "value": reference}]),
    )  # fmt: skip
    if asked != [T.text(language, m.ASK_SECRET, case_ref=reference)]:
        return asked
    waiting = {"awaiting": "secret", "pending_ref": reference, "language": language}
    _, said = run(
        a.ActionRoute(), tracker(secret, "help", sender=sender, choice=secret, slots=waiting)
    )
    return said


def wrong_for(secret: str) -> str:
    return "000000" if secret != "000000" else "111111"


# --- status from another phone --------------------------------------------------------------------
def test_new_secrets_have_six_digits_and_old_four_digit_ones_still_work(services):
    reference, secret = _file(services)
    assert len(secret) == 6 and secret.isdigit()
    with services.database.session() as s:
        old = repo.find_case(s, reference=reference)
        old.secret_hash = repo._hash_secret("4821")  # filed before issue 12
    assert status_from("other-phone", reference, "4821") == [
        T.text("en", m.STATUS_NEW, case_ref=reference),
        T.text("en", m.STATUS_UPDATED, date=_today()),
    ]


def _today() -> str:
    from bot.i18n import format_date

    return format_date("en", dt.datetime.now(dt.timezone.utc))


def test_wrong_secrets_are_counted_in_the_store_whatever_the_sender_and_lock(services):
    reference, secret = _file(services)
    not_found = [T.text("en", m.CASE_NOT_FOUND), T.text("en", m.MENU_HINT)]
    locked = [T.text("en", m.SECRET_LOCKED)]
    # Each try from a new sender id: a conversation slot would start from zero every time.
    for i in range(repo.MAX_SECRET_FAILURES - 1):
        assert status_from(f"thief-{i}", reference, wrong_for(secret)) == not_found
    assert not [e for e in services.notifier.alerts if e["reason"] == "secret_lockout"]
    assert status_from("thief-5", reference, wrong_for(secret)) == locked
    # Locked: the right secret does not open it, and a new phone is told at once.
    assert status_from("thief-6", reference, secret) == locked
    _, said = run(
        a.ActionCaseStatus(),
        tracker(reference, "case_status", sender="thief-7",
                entities=[{"entity": "case_ref", "value": reference}]),
    )  # fmt: skip
    assert said == locked
    lockouts = [e for e in services.notifier.alerts if e["reason"] == "secret_lockout"]
    assert len(lockouts) == 1 and lockouts[0]["case_ref"] == reference
    assert wrong_for(secret) not in str(services.notifier.alerts)
    assert secret not in str(services.notifier.alerts)
    # A day later (the lock's end moved into the past) the worker gets in with the secret.
    with services.database.session() as s:
        (attempt,) = s.query(ReferenceAttempt)
        attempt.locked_until = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    said = status_from("worker-new-phone", reference, secret)
    assert said[0] == T.text("en", m.STATUS_NEW, case_ref=reference)
    with services.database.session() as s:
        assert s.query(ReferenceAttempt).count() == 0  # the right secret clears the count


def test_a_reference_that_does_not_exist_is_answered_and_timed_the_same(services, monkeypatch):
    reference, secret = _file(services)
    missing = "HX-100000" if reference != "HX-100000" else "HX-100001"
    scrypts: list[tuple] = []
    real_scrypt = hashlib.scrypt

    def counted(password, *, salt, n, r, p, dklen, **kw):
        scrypts.append((n, r, p, dklen))
        return real_scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, **kw)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    answers = {}
    for ref in (reference, missing):
        answers[ref], work = [], []
        for i in range(repo.MAX_SECRET_FAILURES):
            scrypts.clear()
            answers[ref].append(status_from(f"probe-{ref}-{i}", ref, wrong_for(secret)))
            work.append(list(scrypts))
        # Asked again while locked: a new phone is told at once, one already asked for the
        # secret when the lock came is checked (and refused) at the same cost.
        scrypts.clear()
        answers[ref].append(status_from(f"probe-{ref}-late", ref, wrong_for(secret)))
        waiting = {"awaiting": "secret", "pending_ref": ref}
        _, said = run(a.ActionRoute(), tracker(secret, "help", choice=secret, slots=waiting))
        answers[ref].append(said)
        work.append(list(scrypts))
        # one scrypt of the same cost for every secret checked: wrong, locking, locked
        assert work == [[(2**14, 8, 1, 32)]] * (repo.MAX_SECRET_FAILURES + 1), ref
    assert answers[reference] == answers[missing]
    assert answers[missing][-1] == [T.text("en", m.SECRET_LOCKED)]
    lockouts = [e for e in services.notifier.alerts if e["reason"] == "secret_lockout"]
    assert [e["case_ref"] for e in lockouts] == [reference, None]


# --- the secret in the transcript -----------------------------------------------------------------
def test_the_filing_reply_keeps_the_secret_masked_in_the_transcript(services):
    _, said = run(
        a.ActionFileCase(),
        tracker("x", "out_of_scope", slots={**FULL_INTAKE, "topic": "wages", "country": "MY"}),
    )
    secret = said[0].split("secret code is ")[1][:6]
    assert said[0].endswith(f"{secret}. Keep them to check your case.")  # the worker has it
    with services.database.session() as s:
        (case,) = s.query(Case)
        texts = [msg.text for msg in case.messages]
    assert T.text("en", m.CASE_FILED, case_ref=case.reference, secret=repo.SECRET_MASK) in texts
    assert not any(secret in text for text in texts)


def test_the_secret_issued_in_a_turn_is_masked_without_a_second_scrypt(services, monkeypatch):
    """Filing hashes the new secret once (scrypt); the reply that gives it is masked from the
    secret the turn issued, not by hashing again. In a later session, where it is not known,
    the same text is still masked, by scrypt."""
    calls: list[int] = []
    real_scrypt = hashlib.scrypt

    def counted(password, **kw):
        calls.append(1)
        return real_scrypt(password, **kw)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    _, said = run(
        a.ActionFileCase(),
        tracker("x", "out_of_scope", slots={**FULL_INTAKE, "topic": "wages", "country": "MY"}),
    )
    assert len(calls) == 1  # the new secret's hash, nothing more
    secret = said[0].split("secret code is ")[1][:6]
    with services.database.session() as s:
        (case,) = s.query(Case)
        assert any(repo.SECRET_MASK in msg.text for msg in case.messages)
        calls.clear()
        text = f"{case.reference}: {secret} and 123456"
        wrong = "123456" if secret != "123456" else "654321"
        masked = repo.mask_secrets(s, text.replace("123456", wrong))
        assert masked == f"{case.reference}: {repo.SECRET_MASK} and {wrong}"
        assert len(calls) == 2  # not issued in this session: one scrypt a number


def test_a_secret_typed_from_another_phone_is_masked_and_links_the_case(services):
    reference, secret = _file(services)
    status_from("other-phone", reference, secret)
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        other = s.query(Contact).filter_by(pseudonym=services.pseudonym("rest", "other-phone"))
        inbound = [
            msg.text for msg in case.messages
            if msg.contact_id == other.one().id and msg.direction == "in"
        ]  # fmt: skip
    assert inbound == [repo.SECRET_MASK]


@pytest.fixture
def fakes():
    telegram, twilio = FakeTelegram(), FakeTwilio()
    yield telegram, twilio
    telegram.close()
    twilio.close()


@pytest.fixture
def inbox(services, fakes):
    """The channels' queue on the actions' store; Rasa's part (calling the action server) is
    played by ``ActionsAsRasa``."""
    telegram, twilio = fakes
    settings = channel_config.load(
        {"TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_WEBHOOK_SECRET": "s3cret",
         "TELEGRAM_API_BASE": telegram.url, **TWILIO_ENV, "TWILIO_API_BASE": twilio.url,
         "HELPLINE_CHANNEL_RETRY_SECONDS": "0.01"}
    )  # fmt: skip
    sender = TwilioSender(settings)
    return Inbox(
        services.database,
        services.settings.pseudonym_key,
        settings,
        senders={"telegram": TelegramSender("123:abc", telegram.url), "sms": sender},
        packs=locale_packs.discover(),
    )


class ActionsAsRasa:
    """Runs one of our actions for each message, with the given slots, as Rasa would: the
    tracker carries the channel and the queue's message id (with ``choice``, the message is a
    bare number, as the NLU's command component marks it); the replies go to the channel."""

    def __init__(self, action, intent: str, slots: dict, choice: bool = False) -> None:
        self.action, self.intent, self.slots, self.choice = action, intent, slots, choice

    async def __call__(self, message) -> None:
        extra = {"choice": message.text} if self.choice else {}
        t = tracker(message.text, self.intent, sender=message.sender_id, slots=self.slots,
                    channel=message.input_channel, **extra)  # fmt: skip
        t.events[-1]["message_id"] = message.message_id
        dispatcher = CollectingDispatcher()
        await self.action.run(dispatcher, t, {})
        for reply in dispatcher.messages:
            await message.output_channel.send_text_message(message.sender_id, reply["text"])


async def drain(box: Inbox) -> None:
    for _ in range(10):
        await box.run_due()
        await asyncio.sleep(0.02)


def test_on_telegram_the_worker_gets_the_secret_and_the_transcript_keeps_it_masked(
    services, inbox, fakes
):
    telegram, _ = fakes
    slots = {**FULL_INTAKE, "topic": "wages", "country": "MY"}
    inbox.on_new_message = ActionsAsRasa(a.ActionFileCase(), "out_of_scope", slots)
    inbox.accept(Inbound("telegram", "4242", "900", "after 9 pm"))
    asyncio.run(drain(inbox))
    sent = [p["text"] for p in telegram.sent("sendMessage")]
    secret = sent[0].split("secret code is ")[1][:6]
    assert secret.isdigit()
    with services.database.session() as s:
        (case,) = s.query(Case)
        stored = [(msg.direction, msg.status, msg.text) for msg in case.messages]
        everything = " ".join(msg.text or "" for msg in s.query(Message))
    masked = T.text("en", m.CASE_FILED, case_ref=case.reference, secret=repo.SECRET_MASK)
    assert ("out", "sent", masked) in stored
    assert secret not in everything

    # From another chat, the secret typed is masked where the queue stored it.
    waiting = {"awaiting": "secret", "pending_ref": case.reference}
    inbox.on_new_message = ActionsAsRasa(a.ActionRoute(), "help", waiting, choice=True)
    inbox.accept(Inbound("telegram", "777", "901", secret))
    asyncio.run(drain(inbox))
    assert telegram.sent("sendMessage")[-2]["text"] == T.text(
        "en", m.STATUS_NEW, case_ref=case.reference
    )
    with services.database.session() as s:
        everything = " ".join(msg.text or "" for msg in s.query(Message))
        typed = s.query(Message).filter_by(provider_id="901").one()
        assert (typed.text, typed.case_id) == (repo.SECRET_MASK, case.id)  # linked, masked
    assert secret not in everything


# --- erasure during a hand-off or an emergency ----------------------------------------------------
def _asked_erase() -> list[dict]:
    """The previous turn: the worker asked to erase, the bot asked to confirm."""
    return [
        {"event": "user", "text": "delete my data", "parse_data": {"command": "erase"}},
        {"event": "slot", "name": "awaiting", "value": "erase"},
    ]


@pytest.mark.parametrize("start", ["handoff", "emergency"])
def test_erasure_is_never_held_back_by_a_handoff_or_an_emergency(services, start):
    reference, _ = _file(services)
    if start == "handoff":
        run(a.ActionHandoff(), tracker("a person please", "human_handoff"))
    else:
        run(a.ActionEmergency(), tracker("they lock us in, help", "emergency",
                                         slots={"case_ref": reference}))  # fmt: skip
    events, said = run(a.ActionRoute(), tracker("delete my data", "help", command="erase"))
    assert said == [T.text("en", m.ERASE_CONFIRM)]
    assert events == [SlotSet("awaiting", "erase")]
    events, said = run(
        a.ActionRoute(),
        tracker("1", "help", choice="1", slots={"awaiting": "erase"}, history=_asked_erase()),
    )
    assert said == [T.text("en", m.ERASE_DONE), T.text("en", m.ERASE_NOT_REACHED)]
    assert SlotSet("erased", True) in events
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        assert case.contact is None and case.what_happened is None


def test_in_danger_a_later_1_is_i_am_safe_not_a_stale_erasure(services):
    reference, _ = _file(services)
    run(a.ActionEmergency(),
        tracker("help they beat me", "emergency", slots={"case_ref": reference}))  # fmt: skip
    history = [*_asked_erase(), {"event": "user", "text": "hello", "parse_data": {}},
               {"event": "slot", "name": "awaiting", "value": "safe"}]  # fmt: skip
    _, said = run(
        a.ActionRoute(),
        tracker("1", "help", choice="1", slots={"awaiting": "erase"}, history=history),
    )
    assert said[0] == T.text("en", m.SAFE_NOW)
    with services.database.session() as s:
        assert repo.find_case(s, reference=reference).contact is not None


# --- erasure reaches everything it can, and says what it cannot -----------------------------------
def test_erasure_empties_every_contact_a_case_links(services):
    with services.database.session() as s:
        for sender, address in (("phone-a", "+60 11-111 1111"), ("phone-b", "+60 22-222 2222")):
            repo.upsert_contact(s, pseudonym=services.pseudonym("rest", sender), channel="rest",
                                address=address, language="bn", country="MY")  # fmt: skip
    reference, secret = _file(services, sender="phone-a")
    status_from("phone-b", reference, secret)  # the same worker, from another phone
    run(
        a.ActionRoute(),
        tracker("1", "help", choice="1", sender="phone-a", slots={"awaiting": "erase"}),
    )
    with services.database.session() as s:
        contacts = s.query(Contact).all()
        assert len(contacts) == 2
        for contact in contacts:
            assert contact.erased_at is not None and contact.pseudonym.startswith("erased:")
            assert (contact.address, contact.language, contact.country) == (None, None, None)
        assert all(msg.text is None and msg.contact_id is None for msg in s.query(Message))


def test_a_replayed_message_cannot_bring_an_erased_worker_back(services, inbox, fakes):
    telegram, _ = fakes
    inbox.on_new_message = ActionsAsRasa(a.ActionRoute(), "help", {"awaiting": "erase"}, True)
    assert inbox.accept(Inbound("telegram", "5150", "1234", "1")) is not None
    asyncio.run(drain(inbox))
    assert [p["text"] for p in telegram.sent("sendMessage")] == [
        T.text("en", m.ERASE_DONE), T.text("en", m.ERASE_NOT_REACHED)
    ]
    with services.database.session() as s:
        (kept,) = s.query(Message)
        assert (kept.text, kept.contact_id) == (None, None) and kept.provider_id != "1234"
    # Telegram delivers the same update again: refused as a duplicate, no contact comes back.
    assert inbox.accept(Inbound("telegram", "5150", "1234", "1")) is None
    with services.database.session() as s:
        assert [c.address for c in s.query(Contact)] == [None]


def test_erasure_deletes_twilios_copies(services, fakes, monkeypatch):
    _, twilio = fakes
    for name, value in {**TWILIO_ENV, "TWILIO_API_BASE": twilio.url}.items():
        monkeypatch.setenv(name, value)
    sender = "b" * 64  # our channels' sender ids are already pseudonyms
    with services.database.session() as s:
        contact = repo.upsert_contact(s, pseudonym=sender, channel="sms", address="+8801711000000")
        case, _ = repo.create_case(s, contact=contact, category="wages")
        for sid, direction in (("SM" + "1" * 32, "in"), ("SM" + "2" * 32, "out")):
            repo.add_message(s, contact=contact, case=case, direction=direction, text="x",
                             provider_id=sid)  # fmt: skip
    _, said = run(a.ActionRoute(), tracker("1", "help", choice="1", sender=sender, channel="sms",
                                           slots={"awaiting": "erase"}))  # fmt: skip
    assert said[-1] == T.text("en", m.ERASE_NOT_REACHED)
    deletes = twilio.wait_for(".json", 2, timeout=10)
    paths = sorted(r["path"] for r in twilio.requests if r["params"].get("method") == "DELETE")
    assert len(deletes) == 2 and paths == [
        f"/2010-04-01/Accounts/{TWILIO_ENV['TWILIO_ACCOUNT_SID']}/Messages/SM{d * 32}.json"
        for d in "12"
    ]


def test_twilio_deletion_waits_for_a_message_twilio_still_processes(fakes):
    _, twilio = fakes
    settings = channel_config.load({**TWILIO_ENV, "TWILIO_API_BASE": twilio.url})
    twilio.fail_next(400, 1, twilio_error(400, 20009))  # "wait a minute"
    assert TwilioSender(settings).delete_stored(["SM" + "3" * 32], pauses=(0.05,)) == 1
    assert len(twilio.requests) == 2


def test_the_erase_command_during_a_report_is_never_an_answer(services):
    from actions.dialogue import SKIPPED
    from actions.form import ValidateGrievanceForm

    t = tracker("delete my data", "help", command="erase", slots={"requested_slot": "intake_what"})
    dispatcher = CollectingDispatcher()
    updates = asyncio.run(ValidateGrievanceForm().validate_answer("intake_what", dispatcher, t))
    assert [msg["text"] for msg in dispatcher.messages] == [T.text("en", m.ERASE_CONFIRM)]
    assert updates == {"awaiting": "erase", "intake_cancelled": True, "intake_what": SKIPPED}
    # The report ends without a word; the erase question stays open.
    events, said = run(a.ActionFileCase(), tracker("delete my data", "help", slots=updates))
    assert said == []
    assert events == [SlotSet("intake_what", None), SlotSet("intake_cancelled", None)]
    _, said = run(a.ActionRoute(), tracker("1", "help", choice="1", slots={"awaiting": "erase"}))
    assert said == [T.text("en", m.ERASE_DONE), T.text("en", m.ERASE_NOT_REACHED)]
