"""The channels in the real server (`helpline run`), table-driven with recorded payloads.

Telegram and Twilio are fake servers on loopback; python-telegram-bot's `Bot` and the twilio
client in the server talk to them. Every payload is sent with a valid, a missing and a wrong
signature; the valid ones must be stored and answered through the provider's API exactly once
(a replay is acknowledged and not stored again), the others refused with 403 before anything is
stored. Then hostile input, and a grep of the
whole run's log for phone numbers, chat ids, tokens and message text.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from twilio.request_validator import RequestValidator

from bot import settings as settings_module
from bot.store import Database
from bot.store.models import Message
from tests.fake_providers import FakeTelegram, FakeTwilio
from tests.live_server import start

pytestmark = pytest.mark.slow

TOKEN = "123456:telegram-test-token"
SECRET = "telegram-webhook-secret-0123"
SID = "AC" + "7" * 32
AUTH = "twilio-auth-token-abcdef"
PUBLIC = "https://helpline.example.org"
CHAT = 5550123401
PHONE = "+60123459876"
MEDIA_PATH = f"/2010-04-01/Accounts/{SID}/Messages/MM1/Media/ME1"


@pytest.fixture(scope="module")
def channels(tmp_path_factory, model):
    telegram, twilio = FakeTelegram(), FakeTwilio()
    server, stop = start(
        tmp_path_factory.mktemp("channels"),
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_API_BASE": telegram.url,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": AUTH,
            "TWILIO_SMS_NUMBER": "+15550001111",
            "TWILIO_WHATSAPP_SENDER": "whatsapp:+15550002222",
            "TWILIO_API_BASE": twilio.url,
            "HELPLINE_PUBLIC_URL": PUBLIC,
            "HELPLINE_CHANNEL_RETRY_SECONDS": "0.2",
        },
    )
    telegram.files[f"/file/bot{TOKEN}/files/v1.bin"] = (b"OggS fake voice", "audio/ogg")
    telegram.files[f"/file/bot{TOKEN}/files/p1.bin"] = (b"\xff\xd8 fake photo", "image/jpeg")
    twilio.files[MEDIA_PATH] = (b"\xff\xd8 whatsapp photo", "image/jpeg")
    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": server.database_url}
    )
    db = Database(settings.database_url, settings.encryption_keys)
    yield server, telegram, twilio, db
    stop()
    db.dispose()
    telegram.close()
    twilio.close()


def post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


_ids = iter(range(70000, 80000))


def tg_update(kind: str, text: str = "hello", chat_type: str = "private") -> dict:
    chat = {"id": CHAT, "type": chat_type}
    user = {"id": CHAT, "is_bot": False, "first_name": "W"}
    message = {"message_id": next(_ids), "date": 1700000000, "chat": chat, "from": user}
    update = {"update_id": next(_ids)}
    if kind == "text":
        update["message"] = {**message, "text": text}
    elif kind == "callback":
        update["callback_query"] = {"id": "cb1", "from": user, "chat_instance": "x", "data": "1",
                                    "message": {**message, "text": "menu"}}  # fmt: skip
    elif kind == "edited":
        update["edited_message"] = {**message, "text": text, "edit_date": 1700000100}
    elif kind == "voice":
        update["message"] = {**message, "voice": {"file_id": "v1", "file_unique_id": "u1",
                                                  "duration": 3}}  # fmt: skip
    elif kind == "photo":
        update["message"] = {**message, "photo": [{"file_id": "p1", "file_unique_id": "u2",
                                                   "width": 90, "height": 90}]}  # fmt: skip
    elif kind == "sticker":
        update["message"] = {**message, "sticker": {"file_id": "s1", "file_unique_id": "u3",
                             "width": 512, "height": 512, "is_animated": False,
                             "is_video": False, "type": "regular"}}  # fmt: skip
    elif kind == "group":
        update["message"] = {**message, "chat": {"id": -100123, "type": "group", "title": "g"},
                              "text": text}  # fmt: skip
    return update


def send_telegram(server, update, secret: str | None = SECRET) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return post(f"{server.base}/webhooks/telegram/webhook", json.dumps(update).encode(), headers)


def twilio_params(kind: str, text: str = "hello", media_base: str = "") -> dict:
    sid = f"SM{next(_ids):032d}"
    base = {"AccountSid": SID, "MessageSid": sid, "SmsSid": sid, "To": "+15550001111",
            "From": PHONE, "Body": text, "NumMedia": "0"}  # fmt: skip
    if kind == "whatsapp":
        base.update(From="whatsapp:" + PHONE, To="whatsapp:+15550002222")
    if kind == "whatsapp_media":
        base.update(From="whatsapp:" + PHONE, To="whatsapp:+15550002222", Body="",
                    NumMedia="1", MediaUrl0=media_base + MEDIA_PATH,
                    MediaContentType0="image/jpeg")  # fmt: skip
    return base


def send_twilio(server, params: dict, signature: str | None = "valid", path="webhook") -> int:
    url = f"{PUBLIC}/webhooks/twilio/{path}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "valid":
        headers["X-Twilio-Signature"] = RequestValidator(AUTH).compute_signature(url, params)
    elif signature == "wrong":
        headers["X-Twilio-Signature"] = RequestValidator("not-the-token").compute_signature(
            url, params
        )
    body = urllib.parse.urlencode(params).encode()
    return post(f"{server.base}/webhooks/twilio/{path}", body, headers)


def stored(db, provider_id: str) -> bool:
    with db.session() as s:
        return s.query(Message).filter_by(provider_id=provider_id).count() == 1


TELEGRAM_CASES = [
    # label, payload kind, stored and answered?
    ("text", "text", True),
    ("callback query (menu button)", "callback", True),
    ("voice note", "voice", True),
    ("photo", "photo", True),
    ("edited message", "edited", False),
    ("sticker", "sticker", False),
    ("group chat", "group", False),
]


@pytest.mark.parametrize(
    ("label", "kind", "taken"), TELEGRAM_CASES, ids=[c[0] for c in TELEGRAM_CASES]
)
def test_telegram_payloads(channels, label, kind, taken):
    server, telegram, _, db = channels
    update = tg_update(kind)
    assert send_telegram(server, update, secret=None) == 403
    assert send_telegram(server, update, secret="wrong-secret") == 403
    assert not stored(db, str(update["update_id"]))
    before = len(telegram.sent("sendMessage"))
    assert send_telegram(server, update) == 200
    assert stored(db, str(update["update_id"])) is taken
    if taken:
        sent = telegram.wait_for("sendMessage", before + 1)
        assert len(sent) > before and sent[before]["chat_id"] == str(CHAT)
        if kind in ("voice", "photo"):
            with db.session() as s:
                message = s.query(Message).filter_by(provider_id=str(update["update_id"])).one()
                assert len(message.attachments) == 1 and message.attachments[0].size > 0
        assert send_telegram(server, update) == 200  # replayed: acknowledged, processed once
        assert stored(db, str(update["update_id"]))


TWILIO_CASES = [("SMS", "sms", "sms"), ("WhatsApp text", "whatsapp", "whatsapp"),
                ("WhatsApp media", "whatsapp_media", "whatsapp")]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "kind", "channel"), TWILIO_CASES, ids=[c[0] for c in TWILIO_CASES]
)
def test_twilio_payloads(channels, label, kind, channel):
    server, _, twilio, db = channels
    params = twilio_params(kind, media_base=twilio.url)
    assert send_twilio(server, params, signature=None) == 403
    assert send_twilio(server, params, signature="wrong") == 403
    forged = {**params, "Body": "changed after signing"}
    good = RequestValidator(AUTH).compute_signature(f"{PUBLIC}/webhooks/twilio/webhook", params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": good}
    assert post(f"{server.base}/webhooks/twilio/webhook",
                urllib.parse.urlencode(forged).encode(), headers) == 403  # fmt: skip
    assert not stored(db, params["MessageSid"])
    before = len(twilio.requests)
    assert send_twilio(server, params) == 200
    assert stored(db, params["MessageSid"])
    deadline = time.monotonic() + 60
    while len(twilio.requests) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    reply = twilio.requests[before]["params"]
    assert reply["To"] == params["From"]
    if kind == "whatsapp_media":
        with db.session() as s:
            message = s.query(Message).filter_by(provider_id=params["MessageSid"]).one()
            assert [a.data for a in message.attachments] == [b"\xff\xd8 whatsapp photo"]
    assert reply["From"] == ("whatsapp:+15550002222" if channel == "whatsapp" else "+15550001111")
    assert send_twilio(server, params) == 200  # replayed: acknowledged, processed once
    assert stored(db, params["MessageSid"])


def test_twilio_status_callback(channels):
    server, _, twilio, db = channels
    params = twilio_params("sms", "status test")
    before = len(twilio.requests)
    assert send_twilio(server, params) == 200
    twilio.wait_for("Messages.json", before + 1)
    time.sleep(1)
    with db.session() as s:
        out = s.query(Message).filter_by(direction="out", status="sent").order_by(Message.id.desc())
        sid = out.first().provider_id
    status = {"AccountSid": SID, "MessageSid": sid, "MessageStatus": "delivered"}
    assert send_twilio(server, status, signature="wrong", path="status") == 403
    assert send_twilio(server, status, path="status") == 200
    with db.session() as s:
        assert s.query(Message).filter_by(provider_id=sid).one().status == "delivered"


HOSTILE = [
    ("empty", ""),
    ("100 KB", "a" * 100_000),
    ("control characters", "hi\x00\x07\x1b[31m there"),
    ("only emoji", "😀😀🙏"),
    ("HTML", "<script>alert(1)</script><b>boss</b>"),
    ("SQL", "'; DROP TABLE messages; --"),
    ("invalid UTF-8 replaced", "caf\udcc3".encode("utf-8", "surrogateescape").decode("latin-1")),
]


@pytest.mark.parametrize(("label", "text"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_handled(channels, label, text):
    server, _, _, _ = channels
    assert send_telegram(server, tg_update("text", text)) == 200
    assert send_twilio(server, twilio_params("sms", text)) == 200


def test_a_message_with_nothing_to_read_is_answered_and_holds_nothing_up(channels):
    """Only invisible, control or space characters: no word for the NLU to read. Rasa's intent
    classifier raised on such a message, so the queue retried it and held the worker's next
    messages behind it until a caseworker was alerted. Now the worker is shown the menu again,
    and their next message is answered at once."""
    server, _, twilio, db = channels
    phone = "+60123450077"
    nothing = "\u200b \x07\u200d"

    def say(text: str) -> None:
        assert send_twilio(server, {**twilio_params("sms", text), "From": phone}) == 200

    say(nothing)
    bodies = _replies_to(twilio, phone, 0, timeout=60)
    assert bodies, "no answer to a message with nothing to read"
    count = len(bodies)
    say("my boss keeps my passport")
    assert len(_replies_to(twilio, phone, count, timeout=60)) > count
    with db.session() as s:
        mine = [m for m in s.query(Message).filter_by(direction="in") if m.text == nothing]
        assert [(m.status, m.attempts or 0) for m in mine] == [("done", 0)]


def test_broken_and_unknown_requests(channels):
    server, _, _, _ = channels
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    url = f"{server.base}/webhooks/telegram/webhook"
    assert post(url, b"\xff\xfe not json", headers) == 400
    assert post(url, b'{"no": "update id"}', headers) == 400
    poll = {"update_id": next(_ids), "poll": {"id": "1", "question": "q", "options": [],
            "total_voter_count": 0, "is_closed": False, "is_anonymous": True,
            "type": "regular", "allows_multiple_answers": False}}  # fmt: skip
    assert post(url, json.dumps(poll).encode(), headers) == 200  # unknown kind: acknowledged


def test_no_phone_number_chat_id_token_or_text_in_the_log(channels):
    server, telegram, twilio, _ = channels
    update = tg_update("text", "my boss took my passport yesterday")
    assert send_telegram(server, copy.deepcopy(update)) == 200
    telegram.wait_for("sendMessage", 1)
    time.sleep(2)
    log = server.log.read_text(errors="replace")
    for secret in (str(CHAT), PHONE, PHONE[1:], TOKEN, SECRET, AUTH,
                   "my boss took my passport yesterday"):  # fmt: skip
        assert secret not in log, secret


def _replies_to(twilio, phone: str, more_than: int, timeout: float = 90, until=None) -> list[str]:
    """Every SMS sent to ``phone`` once more than ``more_than`` arrived and 3 s passed quietly
    (and, with ``until``, once ``until(bodies)`` holds: under load a follow-up can come later)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        bodies = [r["params"]["Body"] for r in twilio.requests if r["params"].get("To") == phone]
        if len(bodies) != last:
            last, since = len(bodies), time.monotonic()
        elif (
            len(bodies) > more_than
            and time.monotonic() - since > 3
            and (until is None or until(bodies))
        ):
            return bodies
        time.sleep(0.2)
    return bodies


def test_vietnamese_sms_worker_is_offered_sms_without_accents_then_stops(channels):
    """Through the real server and action server: the dialogue keeps the worker's language on
    the contact, so the channel offers SMS without accents in Vietnamese, once; the choice holds;
    STOP is confirmed in Vietnamese and then nothing more is sent."""
    from bot.sms import segments

    server, _, twilio, _ = channels
    phone = "+84901234567"

    def say(text: str) -> None:
        assert send_twilio(server, {**twilio_params("sms", text), "From": phone}) == 200

    say("xin chào, tôi muốn hỏi về lương")
    bodies = _replies_to(twilio, phone, 0, until=lambda b: "SMS KHÔNG DẤU" in b[-1])
    assert "SMS KHÔNG DẤU" in bodies[-1]  # the offer, after the dialogue's reply
    assert any(segments(b).encoding == "UCS-2" for b in bodies), bodies
    count = len(bodies)
    say("sms khong dau")
    bodies = _replies_to(twilio, phone, count)
    assert len(bodies) == count + 1  # the confirmation
    count = len(bodies)
    say("0")
    bodies = _replies_to(twilio, phone, count)
    menu = bodies[count:]
    assert menu and all(segments(part).encoding == "GSM-7" for part in menu), menu
    assert sum("SMS KHÔNG DẤU" in b for b in bodies) == 1  # offered once
    count = len(bodies)
    say("ngừng")
    bodies = _replies_to(twilio, phone, count)
    assert len(bodies) == count + 1 and "BAT DAU" in bodies[-1]  # without accents, as chosen
    say("xin chào")
    time.sleep(5)
    assert len(_replies_to(twilio, phone, 0, timeout=5)) == count + 1  # nothing after STOP
