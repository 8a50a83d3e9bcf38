"""The webhooks and the channel layer against hostile callers (issue 12).

Fast tests: the trusted proxies setting, the ``/intent`` shortcut dropped by the normaliser, the
sender ids the REST channel refuses. Then one `helpline run` (development, so that Rasa's API,
the REST channel and the simulator are served on loopback), with Telegram and Twilio as fake
servers on loopback and every request made as a provider makes it (Twilio's signed with its
``RequestValidator``): bodies over the limit get 413 before anything is read or stored; a
duplicate delivery gets 200 and is processed once; a delivery status callback never moves a
reply backwards; forwarded headers are believed only from a trusted proxy (connections from
127.0.0.2 are "the proxy", those from 127.0.0.1 are not); a worker's ``/restart`` or
``/affirm{...}`` is plain text to the real Rasa processor; the REST channel and the simulator
take no pseudonym and no simulator address as a sender.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid

import pytest
from twilio.request_validator import RequestValidator

from bot import settings as settings_module
from bot.channels import config as channel_config
from bot.channels.rest import internal_sender
from bot.store import Database
from bot.store import repository as repo
from bot.store.models import Message
from nlu.script import normalize
from tests.fake_providers import FakeTelegram, FakeTwilio, signed_twilio_post
from tests.live_server import start

TOKEN = "123456:telegram-test-token"
SECRET = "telegram-webhook-secret-0123"
SID = "AC" + "5" * 32
AUTH = "twilio-auth-token-hardening"
PUBLIC = "https://helpline.example.org"
PROXY = "127.0.0.2"  # the trusted proxy: the test connects from this address to be it
TOO_LARGE = "request refused, body over"


# --- fast -------------------------------------------------------------------------------------
def test_forwarded_headers_are_trusted_from_configured_proxies_only():
    settings = channel_config.load({"HELPLINE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7"})
    assert settings.trusts("10.1.2.3") and settings.trusts("192.0.2.7")
    assert not settings.trusts("192.0.2.8") and not settings.trusts("127.0.0.1")
    assert not settings.trusts("") and not settings.trusts("not an address")
    assert channel_config.load({}).trusted_proxies == ()  # nobody by default
    # HELPLINE_TRUST_FORWARDED=true, the older boolean, still means a proxy on this machine.
    legacy = channel_config.load({"HELPLINE_TRUST_FORWARDED": "true"})
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert legacy.trusts(address), address
    assert not legacy.trusts("127.0.0.2") and not legacy.trusts("10.0.0.1")
    with pytest.raises(ValueError, match="HELPLINE_TRUSTED_PROXIES"):
        channel_config.load({"HELPLINE_TRUSTED_PROXIES": "10.0.0.0/8,proxy.example"})


def test_the_webhook_body_limit_is_a_setting():
    assert channel_config.load({}).webhook_max_bytes == 256 * 1024
    assert channel_config.load({"HELPLINE_WEBHOOK_MAX_BYTES": "4096"}).webhook_max_bytes == 4096


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("/emergency", "emergency"),
        ('/affirm{"case_ref":"HX-1"}', 'affirm{"case_ref":"HX-1"}'),
        ("/restart", "restart"),
        (" / //restart ", "restart"),
        ("\u200b/greet", "greet"),  # an invisible character first changes nothing
        ("/", ""),
        ("my boss/agent took it", "my boss/agent took it"),
        ("HX-1234 / 2", "HX-1234 / 2"),
    ],
)
def test_the_normaliser_drops_the_intent_shortcut(typed, read):
    assert normalize(typed)[0] == read


@pytest.mark.parametrize(
    ("sender", "refused"),
    [
        ("a" * 64, True),
        ("0123456789abcdef" * 4, True),
        ("0123456789ABCDEF" * 2, True),
        (" " + "f" * 64 + "\n", True),
        ("sim:123456789012", True),
        ("SIM:123456789012", True),
        ("worker-7", False),
        ("e2e-en-1a2b3c", False),
        ("abc123", False),
    ],
)
def test_rest_sender_ids_that_only_the_queue_gives_are_refused(sender, refused):
    assert bool(internal_sender(sender)) is refused


# --- against the real server ------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, model):
    telegram, twilio = FakeTelegram(), FakeTwilio()
    live, stop = start(
        tmp_path_factory.mktemp("hardening"),
        {
            "HELPLINE_ENV": "development",
            "HELPLINE_SIMULATOR": "true",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_API_BASE": telegram.url,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": AUTH,
            "TWILIO_SMS_NUMBER": "+15550001111",
            "TWILIO_WHATSAPP_SENDER": "whatsapp:+15550002222",
            "TWILIO_API_BASE": twilio.url,
            "HELPLINE_PUBLIC_URL": PUBLIC,
            "HELPLINE_TRUSTED_PROXIES": PROXY,
            "HELPLINE_CHANNEL_RETRY_SECONDS": "0.2",
        },
        log_name="hardening.log",
    )
    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": live.database_url}
    )
    db = Database(settings.database_url, settings.encryption_keys)
    yield live, telegram, twilio, db, settings.pseudonym_key
    stop()
    db.dispose()
    telegram.close()
    twilio.close()


def post(base: str, path: str, body: bytes, headers: dict, source: str = "127.0.0.1",
         chunked: bool = False) -> int:  # fmt: skip
    """A POST from ``source`` (127.0.0.2 is the trusted proxy); its status."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60,
                                            source_address=(source, 0))  # fmt: skip
    try:
        if chunked:
            connection.request("POST", path, body=iter([body]), headers=headers,
                               encode_chunked=True)  # fmt: skip
        else:
            connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def sms(text: str = "hello", phone: str | None = None, **extra) -> dict:
    sid = f"SM{uuid.uuid4().hex}"
    phone = phone or f"+6012{uuid.uuid4().int % 10**7:07d}"
    return {"AccountSid": SID, "MessageSid": sid, "SmsSid": sid, "From": phone,
            "To": "+15550001111", "Body": text, "NumMedia": "0", **extra}  # fmt: skip


def twilio_post(base: str, form: dict, path: str = "webhook", signed_url: str = PUBLIC,
                headers: dict | None = None, source: str = "127.0.0.1") -> int:  # fmt: skip
    """``form`` as Twilio posts it, signed for ``signed_url`` + the path."""
    full = f"/webhooks/twilio/{path}"
    signature = RequestValidator(AUTH).compute_signature(signed_url + full, form)
    all_headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": signature, **(headers or {})}  # fmt: skip
    return post(base, full, urllib.parse.urlencode(form).encode(), all_headers, source)


def telegram_post(base: str, update: dict | bytes, chunked: bool = False) -> int:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    return post(base, "/webhooks/telegram/webhook", body, headers, chunked=chunked)


def telegram_update(chat: int, text: str) -> dict:
    user = {"id": chat, "is_bot": False, "first_name": "W"}
    message = {"message_id": uuid.uuid4().int % 10**6, "date": 1700000000, "text": text,
               "chat": {"id": chat, "type": "private"}, "from": user}  # fmt: skip
    return {"update_id": uuid.uuid4().int % 10**9, "message": message}


def stored(db, provider_id: str) -> int:
    with db.session() as s:
        return s.query(Message).filter_by(provider_id=provider_id).count()


def log_count(live, text: str) -> int:
    return live.log.read_text(errors="replace").count(text)


def settled(sent, timeout: float = 60, quiet: float = 3) -> list:
    """``sent()`` once it is not empty and has not changed for ``quiet`` seconds."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        now = sent()
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since > quiet:
            break
        time.sleep(0.2)
    return last


def replies_to(twilio, phone: str) -> list[dict]:
    return [r["params"] for r in twilio.requests if r["params"].get("To") == phone]


# 1. Request bodies are limited before they are read --------------------------------------------
@pytest.mark.slow
def test_oversized_requests_get_413_and_nothing_is_stored(server):
    live, telegram, twilio, db, _ = server
    big = "a" * (300 * 1024)
    refused = log_count(live, TOO_LARGE)
    form = sms(big)
    assert twilio_post(live.base, form) == 413  # signed and valid, but too large
    assert stored(db, form["MessageSid"]) == 0
    assert log_count(live, TOO_LARGE) == refused + 1  # one line, and no text in it
    update = telegram_update(5550177001, big)
    assert telegram_post(live.base, update) == 413
    status = {"AccountSid": SID, "MessageSid": "SM" + "0" * 32, "MessageStatus": "failed",
              "ErrorCode": "30003", "Padding": big}  # fmt: skip
    assert twilio_post(live.base, status, path="status") == 413
    # (Rasa's log handler drops a line identical to the one before it: another one came between.)
    assert telegram_post(live.base, update, chunked=True) == 413  # no Content-Length to trust
    assert stored(db, str(update["update_id"])) == 0
    simulated = json.dumps({"channel": "sms", "worker": "123456789012", "text": big}).encode()
    assert post(live.base, "/webhooks/simulator/webhook", simulated,
                {"Content-Type": "application/json"}) == 413  # fmt: skip
    assert log_count(live, TOO_LARGE) == refused + 5
    assert big[:1000] not in live.log.read_text(errors="replace")
    # Under the limit, a long message is still taken.
    form = sms("b" * (200 * 1024))
    assert twilio_post(live.base, form) == 200
    assert stored(db, form["MessageSid"]) == 1


# 2. A duplicate delivery is acknowledged and processed once -----------------------------------
@pytest.mark.slow
def test_a_twilio_message_delivered_twice_is_acknowledged_twice_and_answered_once(server):
    live, _, twilio, db, _ = server
    form = sms("hello")
    assert signed_twilio_post(live.base, form, auth_token=AUTH, public_url=PUBLIC) == 200
    assert signed_twilio_post(live.base, form, auth_token=AUTH, public_url=PUBLIC) == 200
    first = settled(lambda: replies_to(twilio, form["From"]))
    assert first, "no reply"
    assert signed_twilio_post(live.base, form, auth_token=AUTH, public_url=PUBLIC) == 200
    time.sleep(3)
    assert stored(db, form["MessageSid"]) == 1
    with db.session() as s:
        message = s.query(Message).filter_by(provider_id=form["MessageSid"]).one()
        replies = s.query(Message).filter_by(reply_to_id=message.id, author="bot").count()
    assert replies >= 1 and len(replies_to(twilio, form["From"])) == len(first)


@pytest.mark.slow
def test_a_telegram_update_delivered_twice_is_acknowledged_twice_and_answered_once(server):
    live, telegram, _, db, _ = server
    chat = 5550177002
    update = telegram_update(chat, "hello")
    assert telegram_post(live.base, update) == 200
    assert telegram_post(live.base, update) == 200
    to_chat = lambda: [p for p in telegram.sent("sendMessage") if p["chat_id"] == str(chat)]  # noqa: E731
    first = settled(to_chat)
    assert first, "no reply"
    assert telegram_post(live.base, update) == 200
    time.sleep(3)
    assert stored(db, str(update["update_id"])) == 1 and to_chat() == first


# 3. Status callbacks never move a reply backwards ---------------------------------------------
def _answered(live, twilio, db, form: dict) -> Message:
    """The first reply to ``form``'s message once Twilio took it (status ``sent``)."""
    assert twilio_post(live.base, form) == 200
    assert settled(lambda: replies_to(twilio, form["From"]))
    with db.session() as s:
        message = s.query(Message).filter_by(provider_id=form["MessageSid"]).one()
        reply = (s.query(Message).filter_by(reply_to_id=message.id, status="sent")
                 .order_by(Message.id).first())  # fmt: skip
        s.expunge(reply)
    assert reply is not None and reply.provider_id
    return reply


def _callback(live, sid: str, status: str, error: str | None = None) -> int:
    form = {"AccountSid": SID, "MessageSid": sid, "MessageStatus": status}
    if error:
        form["ErrorCode"] = error
    return twilio_post(live.base, form, path="status")


def _state(db, reply_id: int) -> tuple:
    with db.session() as s:
        reply = s.get(Message, reply_id)
        return reply.status, reply.error, reply.channel, reply.attempts


@pytest.mark.slow
def test_status_callbacks_only_move_a_reply_forward(server):
    live, _, twilio, db, _ = server
    reply = _answered(live, twilio, db, sms("hello"))
    assert _callback(live, reply.provider_id, "sent") == 200
    assert _state(db, reply.id)[0] == "sent"
    assert _callback(live, reply.provider_id, "delivered") == 200
    delivered = _state(db, reply.id)
    assert delivered[0] == "delivered"
    before = len(twilio.requests)
    for status, error in (("failed", "30003"), ("undelivered", "30005"), ("sent", None),
                          ("queued", None), ("delivered", None), ("read", None)):  # fmt: skip
        assert _callback(live, reply.provider_id, status, error) == 200  # replayed, late
        assert _state(db, reply.id) == delivered, status
    time.sleep(2)
    assert len(twilio.requests) == before  # nothing sent again


@pytest.mark.slow
def test_a_replayed_closed_window_failure_never_resends_a_delivered_whatsapp_reply(server):
    live, _, twilio, db, _ = server
    phone = f"+6013{uuid.uuid4().int % 10**7:07d}"
    form = sms("hello", phone=f"whatsapp:{phone}", To="whatsapp:+15550002222")
    reply = _answered(live, twilio, db, form)
    assert _callback(live, reply.provider_id, "delivered") == 200
    delivered = _state(db, reply.id)
    before = len(twilio.requests)
    assert _callback(live, reply.provider_id, "failed", "63016") == 200
    time.sleep(2)
    assert _state(db, reply.id) == delivered and len(twilio.requests) == before


@pytest.mark.slow
def test_a_real_failure_is_still_recorded_once(server):
    live, _, twilio, db, _ = server
    reply = _answered(live, twilio, db, sms("hello"))
    assert _callback(live, reply.provider_id, "undelivered", "30005") == 200
    failed = _state(db, reply.id)
    assert failed[:2] == ("failed", "twilio_30005")
    assert _callback(live, reply.provider_id, "delivered") == 200  # cannot follow a failure
    assert _callback(live, reply.provider_id, "failed", "30003") == 200
    assert _state(db, reply.id) == failed


# 4. Forwarded headers only from a trusted proxy -----------------------------------------------
@pytest.mark.slow
def test_forwarded_headers_from_an_untrusted_address_cannot_make_a_signature_valid(server):
    live, _, _, db, _ = server
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "forged.example"}
    # Signed for another host (a request captured elsewhere, replayed with its host forged).
    form = sms("hello")
    assert twilio_post(live.base, form, signed_url="https://forged.example",
                       headers=forged) == 403  # fmt: skip
    assert stored(db, form["MessageSid"]) == 0
    # From the trusted proxy the same headers are believed: that is what they are for.
    assert twilio_post(live.base, form, signed_url="https://forged.example", headers=forged,
                       source=PROXY) == 200  # fmt: skip
    # From elsewhere they are ignored: a request signed for HELPLINE_PUBLIC_URL still passes.
    form = sms("hello")
    assert twilio_post(live.base, form, headers=forged) == 200
    assert stored(db, form["MessageSid"]) == 1


# 5. A worker's "/intent{...}" is text ---------------------------------------------------------
def _parse(live, text: str) -> dict:
    return json.loads(_request(live, "/model/parse", {"text": text})[1])


def _request(live, path: str, body: dict) -> tuple[int, bytes]:
    url = urllib.parse.urlsplit(live.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        connection.request("POST", path, body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "text", ["/emergency", '/affirm{"case_ref":"HX-1"}', "/restart", "/greet@1.0", "//deny"]
)
def test_the_rasa_processor_reads_a_slash_message_as_text(server, text):
    live = server[0]
    parsed, plain = _parse(live, text), _parse(live, text.lstrip("/"))
    assert parsed["intent"]["name"] != "restart"
    assert parsed["intent"] == plain["intent"] and parsed["entities"] == plain["entities"]
    assert not any(e.get("extractor") == "RegexMessageHandler" for e in parsed["entities"])


@pytest.mark.slow
def test_a_workers_restart_does_not_wipe_the_conversation(server):
    live = server[0]
    sender = f"slash-{uuid.uuid4().hex[:8]}"
    live.say(sender, "/start")  # Telegram's bot command still sets no language
    assert live.tracker(sender)["slots"]["language"] is None
    live.say(sender, "my salary was not paid for two months")
    assert live.tracker(sender)["slots"]["language"] == "en"
    live.say(sender, "/restart")
    tracker = live.tracker(sender)  # the events since the last restart, if there was one
    assert "restart" not in [e["event"] for e in tracker["events"]]
    assert "my salary was not paid for two months" in [e.get("text") for e in tracker["events"]]
    assert tracker["slots"]["language"] == "en"


# 6. Nobody acts as a real worker through the REST channel or the simulator ------------------------
@pytest.mark.slow
def test_the_rest_channel_refuses_a_workers_pseudonym_and_a_simulator_address(server):
    live, _, twilio, _, key = server
    form = sms("hello")
    assert twilio_post(live.base, form) == 200
    assert settled(lambda: replies_to(twilio, form["From"]))
    worker = repo.pseudonym(key, "sms", form["From"])  # the real worker's conversation id
    events = len(live.tracker(worker)["events"])
    refused = log_count(live, "rest channel: request refused")
    for sender in (worker, "sim:123456789012", worker.upper()):  # (no two same lines in a row)
        status, _ = _request(live, "/webhooks/rest/webhook",
                             {"sender": sender, "message": "what is my case"})  # fmt: skip
        assert status == 400, sender
    assert log_count(live, "rest channel: request refused") == refused + 3  # one each
    assert len(live.tracker(worker)["events"]) == events  # their conversation untouched
    assert worker not in live.log.read_text(errors="replace")
    # Anyone else chats as before, and always as "rest", whatever input_channel they claim.
    sender = f"rest-{uuid.uuid4().hex[:8]}"
    claimed = {"sender": sender, "message": "hello", "input_channel": "sms"}
    status, body = _request(live, "/webhooks/rest/webhook", claimed)
    assert status == 200 and json.loads(body)
    assert live.tracker(sender)["latest_input_channel"] == "rest"


@pytest.mark.slow
def test_the_simulator_takes_no_pseudonym_as_a_worker(server):
    live, _, _, _, key = server
    for worker in (repo.pseudonym(key, "sms", "+60123450000"), "sim:123456789012"):
        body = json.dumps({"channel": "sms", "worker": worker, "text": "hello"}).encode()
        status = post(live.base, "/webhooks/simulator/webhook", body,
                      {"Content-Type": "application/json"})  # fmt: skip
        assert status == 400, worker
