"""The channels' durable queue (bot/channels/inbox.py) with a real SQLite store and the real
provider clients talking to fake Telegram and Twilio servers on loopback. Rasa is replaced by a
function that answers like it (or fails like it): the whole server is in tests/test_channels.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from actions.dialogue import QUICK_EXIT
from bot import locale_packs
from bot import settings as settings_module
from bot.channels import config as channel_config
from bot.channels import texts
from bot.channels.inbox import Inbound, Inbox
from bot.channels.telegram import TelegramSender
from bot.channels.twilio import TwilioSender
from bot.emergency import Notifier
from bot.i18n import Translations
from bot.sms import segments
from bot.store import Database
from bot.store import repository as repo
from bot.store.models import Contact, Message
from tests.fake_providers import FakeTelegram, FakeTwilio, twilio_error


class Alerts(Notifier):
    def __init__(self) -> None:
        self.events = []

    def alert(self, event: dict) -> None:
        self.events.append(event)


class FakeRasa:
    """Answers every message with "re: <text>" (or a given reply); can fail the next calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.failures = 0
        self.reply = None

    async def __call__(self, message) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("rasa is down")
        self.seen.append((message.sender_id, message.input_channel, message.text))
        text = self.reply or f"re: {message.text}"
        await message.output_channel.send_text_message(message.sender_id, text)


@pytest.fixture
def fakes():
    telegram, twilio = FakeTelegram(), FakeTwilio()
    yield telegram, twilio
    telegram.close()
    twilio.close()


@pytest.fixture
def inbox(tmp_path, fakes):
    telegram, twilio = fakes
    app = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp_path}/q.db"}
    )
    db = Database(app.database_url, app.encryption_keys)
    db.upgrade()
    settings = channel_config.load(
        {
            "TELEGRAM_BOT_TOKEN": "123:abc",
            "TELEGRAM_WEBHOOK_SECRET": "s3cret",
            "TELEGRAM_API_BASE": telegram.url,
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
            "TWILIO_AUTH_TOKEN": "token",
            "TWILIO_SMS_NUMBER": "+15550001111",
            "TWILIO_WHATSAPP_SENDER": "whatsapp:+15550002222",
            "TWILIO_API_BASE": twilio.url,
            "HELPLINE_CHANNEL_RETRY_SECONDS": "0.01",
            "HELPLINE_CHANNEL_MAX_ATTEMPTS": "3",
        }
    )
    twilio_sender = TwilioSender(settings)
    box = Inbox(
        db,
        app.pseudonym_key,
        settings,
        senders={
            "telegram": TelegramSender("123:abc", telegram.url),
            "sms": twilio_sender,
            "whatsapp": twilio_sender,
        },
        packs=locale_packs.discover(),
        notifier=Alerts(),
    )
    box.on_new_message = FakeRasa()
    yield box
    db.dispose()


def run(coro):
    return asyncio.run(coro)


async def drain(box: Inbox, rounds: int = 20) -> None:
    for _ in range(rounds):
        await box.run_due()
        await asyncio.sleep(0.02)


def statuses(box: Inbox, direction: str) -> list[str]:
    with box.db.session() as s:
        rows = s.query(Message).filter(Message.direction == direction).order_by(Message.id)
        return [m.status for m in rows]


def test_accept_process_and_reply_through_telegram(inbox, fakes):
    telegram, _ = fakes
    contact = inbox.accept(Inbound("telegram", "777001", "9001", "hello"))
    assert contact is not None
    assert inbox.accept(Inbound("telegram", "777001", "9001", "hello")) is None  # duplicate
    run(inbox.process(contact))
    (sent,) = telegram.sent("sendMessage")
    assert (sent["chat_id"], sent["text"]) == ("777001", "re: hello")
    sender_id, channel, _ = inbox.on_new_message.seen[0]
    assert channel == "telegram" and "777001" not in sender_id and len(sender_id) == 64
    assert statuses(inbox, "in") == ["done"] and statuses(inbox, "out") == ["sent"]
    with inbox.db.session() as s:
        assert s.query(Contact).one().address == "777001"  # stored (encrypted) only to reply


def test_per_worker_order_is_kept(inbox, fakes):
    telegram, _ = fakes
    for i in range(5):
        contact = inbox.accept(Inbound("telegram", "42", str(100 + i), f"m{i}"))
    run(inbox.process(contact))
    assert [s["text"] for s in telegram.sent("sendMessage")] == [f"re: m{i}" for i in range(5)]


def test_a_message_accepted_while_the_worker_is_let_go_is_answered_at_once(inbox, fakes):
    """The worker writes again just as their previous turn ends: the release has looked for a
    due message and found none, then the new one is accepted here and its ``process`` finds the
    worker still active. It is answered by the turn ending, not left for the next sweep (the
    worker would wait up to a second in silence; a single worker got 1.5 replies a second on
    PostgreSQL instead of 32)."""
    telegram, _ = fakes
    release, written = inbox._release, []

    def release_then_the_worker_writes(contact_id, again=True):
        held = release(contact_id, again)
        if not written:
            written.append(inbox.accept(Inbound("telegram", "43", "201", "second")))
            inbox._again.add(contact_id)  # what the new message's ``process`` does meanwhile
        return held

    inbox._release = release_then_the_worker_writes
    contact = inbox.accept(Inbound("telegram", "43", "200", "first"))
    run(inbox.process(contact))  # no sweep runs here
    assert [s["text"] for s in telegram.sent("sendMessage")] == ["re: first", "re: second"]
    assert statuses(inbox, "in") == ["done", "done"]


def test_rasa_failures_are_retried_then_answered_once(inbox, fakes):
    telegram, _ = fakes
    inbox.on_new_message.failures = 2
    inbox.accept(Inbound("telegram", "5", "1", "are you there"))
    run(drain(inbox))
    assert [s["text"] for s in telegram.sent("sendMessage")] == ["re: are you there"]
    with inbox.db.session() as s:
        assert s.query(Message).filter_by(direction="in").one().attempts == 2


def test_unanswerable_message_goes_to_a_caseworker(inbox, fakes):
    inbox.on_new_message.failures = 99
    inbox.accept(Inbound("sms", "+60123456789", "SM1", "tolong"))
    run(drain(inbox))
    assert statuses(inbox, "in") == ["caseworker"]
    assert inbox.notifier.events[-1]["reason"] == "unanswered"
    assert "+60123456789" not in str(inbox.notifier.events)


def test_actions_down_keeps_the_message_pending(inbox):
    """No probe before each turn: the failed turn itself says the action server is down; only
    then is its health checked before the next try, so Rasa is not run again meanwhile."""
    import logging

    from bot.channels.bridge import RASA_ACTION_FAILED

    rasa = inbox.on_new_message

    async def action_server_down(message) -> None:
        rasa.seen.append(("down", message.input_channel, message.text))
        logging.getLogger("rasa.core.processor").error(f"{RASA_ACTION_FAILED} 'action_answer'")

    inbox.actions_health_url = "http://127.0.0.1:9/health"  # nothing listens there
    inbox.on_new_message = action_server_down
    contact = inbox.accept(Inbound("telegram", "8", "2", "hi"))
    run(inbox.process(contact))
    assert statuses(inbox, "in") == ["pending"]
    with inbox.db.session() as s:
        s.query(Message).update({Message.next_attempt_at: None})  # due again now
    run(inbox.process(contact))
    assert statuses(inbox, "in") == ["pending"] and len(rasa.seen) == 1  # probed, not run
    inbox.actions_health_url = None  # the action server is back
    inbox.on_new_message = rasa
    run(drain(inbox))
    assert statuses(inbox, "in") == ["done"]


def test_provider_500_and_429_are_retried_and_sent_once(inbox, fakes):
    telegram, twilio = fakes
    telegram.fail_next(500, 1, {"ok": False, "error_code": 500, "description": "Internal"})
    twilio.fail_next(429, 1, twilio_error(429, 20429))
    inbox.accept(Inbound("telegram", "11", "3", "one"))
    inbox.accept(Inbound("sms", "+8801711000000", "SM2", "two"))
    run(drain(inbox))
    assert [s["text"] for s in telegram.sent("sendMessage")].count("re: one") == 2  # 500, then ok
    assert statuses(inbox, "out") == ["sent", "sent"]
    assert len(twilio.requests) == 2


def test_provider_that_keeps_failing_marks_the_reply_failed(inbox, fakes):
    _, twilio = fakes
    twilio.fail_next(503, 10, twilio_error(503, 20503))
    inbox.accept(Inbound("sms", "+9771", "SM3", "talab aayena"))
    run(drain(inbox))
    assert statuses(inbox, "out") == ["failed"]
    assert inbox.notifier.events[-1]["reason"] == "undelivered"


def test_closed_whatsapp_window_holds_the_reply(inbox, fakes):
    _, twilio = fakes
    twilio.fail_next(400, 1, twilio_error(400, 63016))
    inbox.accept(Inbound("whatsapp", "whatsapp:+6281", "SM4", "halo"))
    run(drain(inbox))
    assert statuses(inbox, "out") == ["held"]
    assert twilio.requests[0]["params"]["From"] == "whatsapp:+15550002222"
    # The worker writes again: the window is open, the held reply goes first, then the new one.
    inbox.accept(Inbound("whatsapp", "whatsapp:+6281", "SM4b", "masih ada?"))
    run(drain(inbox))
    assert statuses(inbox, "out") == ["sent", "sent"]
    assert [r["params"]["Body"] for r in twilio.requests[1:]] == ["re: halo", "re: masih ada?"]


def test_stop_is_confirmed_once_then_everything_is_held_until_start(inbox, fakes):
    _, twilio = fakes
    inbox.accept(Inbound("sms", "+95911", "SM5", "STOP"))
    run(drain(inbox))
    assert inbox.on_new_message.seen == []  # before the NLU
    (confirmation,) = [r["params"]["Body"] for r in twilio.requests]
    assert confirmation == (
        "OK. We will not send you any more messages. Write START if you want them again."
    )
    inbox.accept(Inbound("sms", "+95911", "SM6", "hello"))
    run(drain(inbox))
    with inbox.db.session() as s:  # a caseworker's reply respects STOP too
        contact = s.query(Contact).one()
        case, _ = repo.create_case(s, contact=contact, category="wages")
        repo.queue_reply(s, case=case, text="We called your employer.", actor="caseworker:ana")
    run(drain(inbox))
    assert statuses(inbox, "out") == ["sent", "held", "held"] and len(twilio.requests) == 1
    inbox.accept(Inbound("sms", "+95911", "SM7", "start"))
    run(drain(inbox))
    assert [r["params"]["Body"] for r in twilio.requests[1:]] == [
        "OK. You will get our messages again.",
        "re: start",
    ]  # what was held while stopped stays held (for the caseworkers), nothing old arrives


def test_a_keyword_reply_is_sent_once_when_rasa_fails_and_is_retried(inbox, fakes):
    telegram, _ = fakes
    inbox.on_new_message.failures = 2
    inbox.accept(Inbound("telegram", "31", "310", "help"))
    run(drain(inbox))
    help_info = Translations().text("en", texts.HELP_INFO, stop="STOP")
    assert [m["text"] for m in telegram.sent("sendMessage")] == [help_info, "re: help"]


def test_stop_and_help_are_answered_in_the_workers_language(inbox, fakes):
    _, twilio = fakes
    vi = next(p for p in locale_packs.discover() if p.code == "vi").meta["keywords"]
    inbox.accept(Inbound("sms", "+8491", "SMvi1", vi["help"][0]))
    run(drain(inbox))
    t = Translations()
    stop_word = vi["stop"][0].upper()
    help_info, dialogue_reply = [r["params"]["Body"] for r in twilio.requests]
    assert help_info == t.text("vi", texts.HELP_INFO, stop=stop_word) and stop_word in help_info
    assert dialogue_reply == f"re: {vi['help'][0]}"  # HELP goes on to the dialogue (the menu)
    inbox.accept(Inbound("sms", "+8491", "SMvi2", vi["stop"][1]))
    run(drain(inbox))
    assert twilio.requests[-1]["params"]["Body"] == t.text(
        "vi", texts.STOPPED, start=vi["start"][0].upper()
    )


def test_vietnamese_sms_without_accents_is_offered_once_and_remembered(inbox, fakes):
    _, twilio = fakes
    vi = next(p for p in locale_packs.discover() if p.code == "vi").meta["keywords"]
    inbox.on_new_message.reply = "Lương của bạn phải được trả đủ và đúng hạn."
    inbox.accept(Inbound("sms", "+8492", "SMp1", "luong"))
    with inbox.db.session() as s:  # the dialogue keeps the conversation's language here
        s.query(Contact).one().language = "vi"
    run(drain(inbox))
    bodies = [r["params"]["Body"] for r in twilio.requests]
    offer = Translations().text(
        "vi", texts.SMS_PLAIN_OFFER, plain=vi["sms_plain"][0].upper(),
        accents=vi["sms_accents"][0].upper(),
    )  # fmt: skip
    assert bodies == ["Lương của bạn phải được trả đủ và đúng hạn.", offer]
    inbox.accept(Inbound("sms", "+8492", "SMp2", vi["sms_plain"][1]))
    inbox.accept(Inbound("sms", "+8492", "SMp3", "luong"))
    run(drain(inbox))
    confirmation, answer = [r["params"]["Body"] for r in twilio.requests[2:]]
    assert segments(confirmation).encoding == "GSM-7"
    assert answer == "Luong cua ban phai duoc tra du va dung han."  # GSM-7: half the cost
    inbox.accept(Inbound("sms", "+8492", "SMp4", vi["sms_accents"][1]))
    inbox.accept(Inbound("sms", "+8492", "SMp5", "luong"))
    run(drain(inbox))
    assert twilio.requests[-1]["params"]["Body"] == "Lương của bạn phải được trả đủ và đúng hạn."
    assert sum(b["params"]["Body"] == offer for b in twilio.requests) == 1  # offered once
    with inbox.db.session() as s:  # the transcript keeps what the bot said, with accents
        texts_out = [m.text for m in s.query(Message).filter_by(direction="out")]
    assert "Luong cua ban phai duoc tra du va dung han." not in texts_out


def test_no_accent_offer_for_languages_that_need_them(inbox, fakes):
    _, twilio = fakes
    inbox.accept(Inbound("sms", "+8801", "SMbn", "beton"))
    with inbox.db.session() as s:
        s.query(Contact).one().language = "bn"
    run(drain(inbox))
    assert [r["params"]["Body"] for r in twilio.requests] == ["re: beton"]


def test_closed_whatsapp_window_falls_back_to_sms_when_the_worker_agreed(inbox, fakes):
    _, twilio = fakes
    inbox.accept(Inbound("whatsapp", "whatsapp:+6282", "SMw1", "halo"))
    with inbox.db.session() as s:
        s.query(Contact).one().sms_fallback = True
    twilio.fail_next(400, 1, twilio_error(400, 63016))
    run(drain(inbox))
    refused, by_sms = twilio.requests
    assert refused["params"]["To"] == "whatsapp:+6282"
    assert by_sms["params"] == {**by_sms["params"], "To": "+6282", "From": "+15550001111",
                                "Body": "re: halo"}  # fmt: skip
    assert statuses(inbox, "out") == ["sent"]
    assert [e["reason"] for e in inbox.notifier.events] == ["sms_fallback"]


def test_a_caseworker_reply_goes_out_through_the_workers_channel(inbox, fakes):
    telegram, _ = fakes
    inbox.accept(Inbound("telegram", "4242", "991", "hello"))
    run(drain(inbox))
    with inbox.db.session() as s:
        contact = s.query(Contact).one()
        case, _ = repo.create_case(s, contact=contact, category="documents", language="en")
        repo.queue_reply(s, case=case, text="We will call you at 8 pm.", actor="caseworker:ana")
        reference = case.reference
    run(drain(inbox))
    assert [m["text"] for m in telegram.sent("sendMessage")] == [
        "re: hello",
        "We will call you at 8 pm.",
    ]
    with inbox.db.session() as s:
        case = repo.find_case(s, reference=reference)
        assert [(m.author, m.status) for m in case.messages] == [("caseworker:ana", "sent")]
        assert [e.kind for e in case.events] == ["created", "reply"]
        with pytest.raises(repo.StoreError):
            repo.queue_reply(s, case=case, text="  ", actor="caseworker:ana")


def test_stop_in_a_packs_own_words(inbox):
    words = [w for p in locale_packs.discover() for w in p.meta["keywords"]["stop"]][:3]
    for i, word in enumerate(words):
        inbox.accept(Inbound("sms", f"+1{i}", f"SMstop{i}", word))
    run(drain(inbox))
    with inbox.db.session() as s:
        assert all(c.opted_out for c in s.query(Contact))


def test_long_sms_reply_is_split_within_the_budget(inbox, fakes):
    _, twilio = fakes
    inbox.on_new_message.reply = " ".join(["আপনার পাসপোর্ট আপনার। কেউ রাখতে পারবে না।"] * 12)
    inbox.accept(Inbound("sms", "+8801", "SM8", "passport"))
    run(drain(inbox))
    bodies = [r["params"]["Body"] for r in twilio.requests]
    assert len(bodies) == 4 and bodies[0].startswith("(1/4) ") and bodies[-1].endswith("…")
    assert all(segments(b).count == 1 for b in bodies)


def test_menu_becomes_telegram_buttons(inbox, fakes):
    telegram, _ = fakes
    inbox.on_new_message.reply = "Reply with a number:\n1 Ask about your rights\n2 Report a problem"
    inbox.accept(Inbound("telegram", "12", "4", "menu"))
    run(drain(inbox))
    markup = telegram.sent("sendMessage")[0]["reply_markup"]
    markup = markup if isinstance(markup, dict) else json.loads(markup)
    buttons = [row[0] for row in markup["inline_keyboard"]]
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        ("1 Ask about your rights", "1"),
        ("2 Report a problem", "2"),
    ]


def test_a_message_accepted_before_a_crash_is_answered_after_restart(inbox, fakes):
    telegram, _ = fakes
    inbox.accept(Inbound("telegram", "13", "5", "still there?"))  # then the process dies
    fresh = Inbox(inbox.db, inbox.pseudonym_key, inbox.settings, inbox.senders)
    fresh.on_new_message = FakeRasa()
    run(drain(fresh))
    assert [s["text"] for s in telegram.sent("sendMessage")] == ["re: still there?"]


def test_erasure_in_this_turn_still_confirms_once_and_keeps_nothing(inbox, fakes):
    telegram, _ = fakes
    from bot.store import repository as repo

    class ErasingRasa(FakeRasa):
        async def __call__(self, message) -> None:
            with inbox.db.session() as s:
                contact = s.query(Contact).filter_by(pseudonym=message.sender_id).one()
                repo.erase_contact(s, contact=contact)
            await message.output_channel.send_text_message(message.sender_id, "deleted")

    inbox.on_new_message = ErasingRasa()
    inbox.accept(Inbound("telegram", "31337", "77", "1"))
    run(drain(inbox))
    assert [s["text"] for s in telegram.sent("sendMessage")] == ["deleted"]
    with inbox.db.session() as s:
        # Only a keyed hash of the message's id stays (a replay is a duplicate): no text, no link.
        (kept,) = s.query(Message)
        assert (kept.text, kept.contact_id, kept.case_id) == (None, None, None)
        assert kept.provider_id == repo.erased_provider_id(s, "telegram", "77")
        assert s.query(Contact).one().address is None


def test_telegram_long_polling_feeds_the_same_queue(inbox, fakes):
    """Only a token, no public URL: the server polls getUpdates (development, no webhook)."""
    from bot.channels.telegram import TelegramInput

    telegram, _ = fakes
    chat = {"id": 4242, "type": "private"}
    telegram.updates = [
        {"update_id": 500, "message": {"message_id": 1, "date": 1, "chat": chat, "text": "hi"}},
        {"update_id": 501, "message": {"message_id": 2, "date": 1, "chat": chat, "text": "2"}},
    ]
    settings = dataclasses.replace(inbox.settings, telegram_secret="", public_url="")
    channel = TelegramInput(settings)
    assert channel.enabled and channel.polling
    channel._inbox = inbox

    async def poll_a_while():
        task = asyncio.get_running_loop().create_task(channel.poll(timeout=0))
        for _ in range(50):
            await asyncio.sleep(0.1)
            if len(telegram.sent("sendMessage")) >= 2:
                break
        task.cancel()

    run(poll_a_while())
    assert [s["text"] for s in telegram.sent("sendMessage")] == ["re: hi", "re: 2"]
    assert telegram.sent("deleteWebhook")  # getUpdates needs the webhook removed
    offsets = [int(p.get("offset") or 0) for p in telegram.sent("getUpdates")]
    assert offsets[0] == 0 and 502 in offsets  # acknowledged by offset, each update once


def _attachments(box):
    from bot.store.models import Attachment

    with box.db.session() as s:
        return [(a.content_type, a.size, a.sha256, a.data) for a in s.query(Attachment)]


def test_telegram_photo_is_downloaded_and_stored_encrypted(inbox, fakes):
    import hashlib

    telegram, _ = fakes
    photo = b"\xff\xd8\xff fake jpeg bytes"
    telegram.files["/file/bot123:abc/files/PHOTO1.bin"] = (photo, "image/jpeg")
    media = [{"ref": "PHOTO1", "content_type": "image/jpeg", "kind": "photo"}]
    inbox.accept(Inbound("telegram", "66", "600", "[photo]", "media", media))
    run(drain(inbox))
    digest = hashlib.sha256(photo).hexdigest()
    assert _attachments(inbox) == [("image/jpeg", len(photo), digest, photo)]
    with inbox.db.engine.connect() as c:
        raw = c.exec_driver_sql("select data from attachments").scalar_one()
    assert photo not in bytes(raw)  # encrypted at rest


def test_twilio_media_uses_twilios_auth_and_the_size_limit(inbox, fakes):
    import base64

    _, twilio = fakes
    twilio.files["/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"] = (b"OggS voice", "audio/ogg")
    twilio.files["/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2"] = (b"x" * 2000, "video/mp4")
    url = twilio.url + "/2010-04-01/Accounts/AC1/Messages/MM1/Media/"
    media = [{"ref": url + "ME1", "content_type": "audio/ogg", "kind": "media"},
             {"ref": url + "ME2", "content_type": "video/mp4", "kind": "media"}]  # fmt: skip
    inbox.settings = dataclasses.replace(inbox.settings, media_max_bytes=1000)
    inbox.accept(Inbound("whatsapp", "whatsapp:+8801", "SMmedia", "[media]", "media", media))
    run(drain(inbox))
    stored = _attachments(inbox)
    assert stored[0][0:2] == ("audio/ogg", 10) and stored[0][3] == b"OggS voice"
    assert stored[1][0:2] == ("video/mp4", 2000) and stored[1][3] is None  # over the limit
    expected = "Basic " + base64.b64encode(b"AC" + b"1" * 32 + b":token").decode()
    assert twilio.downloads[0]["authorization"] == expected


def test_media_urls_outside_twilio_are_never_fetched(inbox, fakes):
    _, twilio = fakes
    media = [{"ref": "http://127.0.0.1:9/internal-secret", "content_type": "text/plain"}]
    inbox.accept(Inbound("sms", "+1555", "SMevil", "[media]", "media", media))
    run(drain(inbox))
    assert _attachments(inbox) == []
    with inbox.db.session() as s:
        message = s.query(Message).filter_by(direction="in").one()
        assert message.status == "caseworker" and message.error == "media_media_url_not_twilio"


def test_quick_exit_deletes_the_chat_and_leaves_a_neutral_reply(inbox, fakes):
    telegram, _ = fakes
    for i, text in enumerate(["my boss hits me", "he took my passport"]):
        inbox.accept(Inbound("telegram", "9090", str(800 + i), text, chat_message_id=str(50 + i)))
    run(drain(inbox))
    ours = sorted(int(m.provider_id) for m in _sent_rows(inbox))
    word = next(p for p in locale_packs.discover() if p.code == "th").meta["keywords"][
        "quick_exit"
    ][0]
    inbox.accept(Inbound("telegram", "9090", "802", word, chat_message_id="52"))
    run(drain(inbox))
    (deleted,) = telegram.sent("deleteMessages")
    ids = (
        json.loads(deleted["message_ids"])
        if isinstance(deleted["message_ids"], str)
        else deleted["message_ids"]
    )
    assert sorted(ids) == sorted([50, 51, 52, *ours])
    assert telegram.sent("sendMessage")[-1]["text"] == "👍"
    assert [seen[2] for seen in inbox.on_new_message.seen] == [
        "my boss hits me",
        "he took my passport",
    ]


def test_quick_exit_from_the_menu(inbox, fakes):
    telegram, _ = fakes
    inbox.accept(Inbound("telegram", "9191", "900", "help me", chat_message_id="70"))
    run(drain(inbox))
    ours = [int(m.provider_id) for m in _sent_rows(inbox)]

    async def dialogue_asks_for_a_quick_exit(message) -> None:
        await message.output_channel.send_custom_json(message.sender_id, QUICK_EXIT)

    inbox.on_new_message = dialogue_asks_for_a_quick_exit
    inbox.accept(Inbound("telegram", "9191", "901", "7", "callback"))
    run(drain(inbox))
    (deleted,) = telegram.sent("deleteMessages")
    ids = deleted["message_ids"]
    ids = json.loads(ids) if isinstance(ids, str) else ids
    assert sorted(ids) == sorted([70, *ours])
    assert [m["text"] for m in telegram.sent("sendMessage")] == ["re: help me", "👍"]
    assert statuses(inbox, "in") == ["done", "done"]


def _sent_rows(box):
    with box.db.session() as s:
        return s.query(Message).filter_by(direction="out", status="sent").all()


def test_a_burst_waits_for_the_senders_rate_instead_of_failing(inbox, fakes):
    """Three replies to one chat whose bucket allows one now and one every 10 s: the first is
    sent, the others go back to the queue for later (not failed, no attempt counted)."""
    from bot.channels.ratelimit import LocalRateLimiter, Rate

    telegram, _ = fakes
    inbox.outbox.limiter = LocalRateLimiter(
        {"telegram:chat": Rate(0.1, 1), "telegram:bot": Rate(30.0, 30)}, secret="k"
    )
    inbox.on_new_message.reply = "one"
    contact = inbox.accept(Inbound("telegram", "31", "1", "a"))
    inbox.accept(Inbound("telegram", "31", "2", "b"))
    inbox.accept(Inbound("telegram", "31", "3", "c"))
    run(inbox.process(contact))
    assert len(telegram.sent("sendMessage")) == 1
    with inbox.db.session() as s:
        waiting = s.query(Message).filter_by(direction="out", status="queued").all()
        assert len(waiting) == 2 and all(m.attempts == 0 and not m.error for m in waiting)
        assert all(m.next_attempt_at is not None for m in waiting)
    assert statuses(inbox, "out").count("failed") == 0
