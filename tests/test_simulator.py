"""The local web simulator (bot/channels/simulator.py).

Fast tests: when it is on, the sender routing (a simulated address never reaches a provider, a
real one never reaches the simulator), and the recording senders, which must record exactly what
our Twilio and Telegram senders would have sent.

Slow tests, against the real `helpline run` (with Telegram and Twilio configured against fake
servers on loopback, to show they are never called for simulated workers): SMS workers in
Bengali and Vietnamese get the menu in SMS parts with correct segments; a Telegram worker gets
buttons and pressing one works; STOP holds replies; bad input is a 400; the log keeps no text;
the simulator is off in production. Then a real browser (Debian's chromium, driven by
Playwright) uses the page as a newcomer would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from bot.channels import base
from bot.channels import config as channel_config
from bot.channels.inbox import Sender, SendError, buttons_of
from bot.channels.simulator import SimulatedSender, SimulatorInput
from bot.sms import segments, split_for_sms
from tests.browser import CHROMIUM_ARGS, find_chromium

TOKEN = "123456:telegram-test-token"
SID = "AC" + "7" * 32
AUTH = "twilio-auth-token-abcdef"
PUBLIC = "https://helpline.example.org"
PHONE = "+60123459876"
SECRET_SENTENCE = "my boss keeps my passport in his drawer"


# --- fast -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "flag", "on"),
    [
        ("development", "", True),
        ("development", "false", False),
        ("development", "true", True),
        ("test", "", False),
        ("test", "true", True),
        ("production", "", False),
        ("production", "no", False),
        ("production", "true", True),
        ("production", "1", True),
    ],
)
def test_simulator_is_on_in_development_or_when_explicitly_enabled(env, flag, on):
    settings = channel_config.load({"HELPLINE_ENV": env, "HELPLINE_SIMULATOR": flag})
    assert settings.simulator is on
    assert not channel_config.load({}).simulator  # no HELPLINE_ENV: production


class Recording(Sender):
    def __init__(self) -> None:
        self.sent = []

    async def send(self, channel, address, text, buttons, parts_sent=0):
        self.sent.append(address)
        return "id"

    async def delete(self, address, message_ids):
        self.sent.append(("delete", address))
        return len(message_ids)


def test_router_keeps_simulated_and_real_addresses_apart():
    router, provider, simulator = base.SenderRouter(), Recording(), Recording()
    with pytest.raises(SendError, match="no_simulator"):
        asyncio.run(router.send("sms", "sim:123456", "hi", []))
    with pytest.raises(SendError, match="no_sender"):
        asyncio.run(router.send("sms", PHONE, "hi", []))
    router.provider, router.simulator = provider, simulator
    for address in ("sim:123456", PHONE, "whatsapp:" + PHONE, "5550123401"):
        asyncio.run(router.send("sms", address, "hi", []))
    asyncio.run(router.delete("sim:123456", ["1"]))
    assert simulator.sent == ["sim:123456", ("delete", "sim:123456")]
    assert provider.sent == [PHONE, "whatsapp:" + PHONE, "5550123401"]
    with pytest.raises(SendError, match="not_simulated"):  # the simulator's own check too
        asyncio.run(SimulatedSender(Recording()).send("sms", PHONE, "hi", []))


def test_recording_senders_record_what_the_providers_would_get():
    channel = SimulatorInput(channel_config.load({"HELPLINE_SMS_SEGMENT_BUDGET": "3"}))
    senders = channel.senders()
    text = ("Bạn có quyền giữ hộ chiếu của mình. Chủ không được giữ nó. Nếu chủ giữ, hãy báo cho "
            "chúng tôi. Chúng tôi sẽ giúp bạn. Trả lời 0 để về menu. ") * 3  # fmt: skip
    asyncio.run(senders["sms"].send("sms", "sim:111111", text, []))
    parts = channel.recorder.since("111111", 0)
    assert [p["text"] for p in parts] == split_for_sms(text, 3)
    assert len(parts) == 3 and parts[-1]["text"].endswith("…")  # shortened within the budget
    for part in parts:
        seg = segments(part["text"])
        assert part["kind"] == "sms" and part["sms"]["segments"] == seg.count == 1
        assert part["sms"]["encoding"] == seg.encoding == "UCS-2"
    menu = "Reply with a number:\n1 Ask about your rights\n2 Report a problem"
    asyncio.run(senders["telegram"].send("telegram", "sim:222222", menu, buttons_of(menu)))
    (message,) = channel.recorder.since("222222", 0)
    assert message["text"] == menu
    assert message["buttons"] == [[{"value": "1", "label": "1 Ask about your rights"}],
                                  [{"value": "2", "label": "2 Report a problem"}]]  # fmt: skip
    assert channel.recorder.offered("222222", "2") and not channel.recorder.offered("222222", "3")
    asyncio.run(senders["whatsapp"].send("whatsapp", "sim:333333", text, []))
    (whatsapp,) = channel.recorder.since("333333", 0)
    assert whatsapp == {"seq": whatsapp["seq"], "kind": "whatsapp", "text": text,
                        "message_id": whatsapp["message_id"]}  # fmt: skip


# --- against the real server ------------------------------------------------------------------
class Simulator:
    """The simulator's HTTP API, as the page uses it."""

    def __init__(self, base_url: str) -> None:
        self.base = f"{base_url}/webhooks/simulator"

    def request(self, method, path, body=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": content_type} if data is not None else {}
        request = urllib.request.Request(f"{self.base}/{path}", data=data, headers=headers,
                                         method=method)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def call(self, method, path, body=None, **kwargs):
        status, raw, _ = self.request(method, path, body, **kwargs)
        return status, json.loads(raw or b"null")

    def new_worker(self, channel: str, language: str | None) -> dict:
        status, data = self.call("POST", "workers", {"channel": channel, "language": language})
        assert status == 200, data
        return data

    def say(self, worker: dict, **body) -> int:
        status, _ = self.call(
            "POST", "webhook", {"channel": worker["channel"], "worker": worker["worker"], **body}
        )
        return status

    def received(self, worker: dict, after: int = 0) -> dict:
        query = urllib.parse.urlencode(
            {"channel": worker["channel"], "worker": worker["worker"], "after": after}
        )
        status, data = self.call("GET", f"messages?{query}")
        assert status == 200, data
        return data

    def settle(self, worker: dict, after: int = 0, new: bool = True, timeout: float = 120):
        """What the worker received after ``after`` once the queue is done with them: nothing
        waiting to be read or sent (and, with ``new``, something arrived), steady for 1.5 s."""
        deadline = time.monotonic() + timeout
        seen, steady_since = None, time.monotonic()
        while time.monotonic() < deadline:
            data = self.received(worker, after)
            queue = data["queue"]
            state = (len(data["messages"]), json.dumps(queue, sort_keys=True))
            if state != seen:
                seen, steady_since = state, time.monotonic()
            done = not queue["pending"] and not queue["queued"] and (data["messages"] or not new)
            if done and time.monotonic() - steady_since > 1.5:
                return data["messages"], queue
            time.sleep(0.3)
        pytest.fail(f"the queue did not settle: {data}")


@pytest.fixture(scope="module")
def sim(tmp_path_factory, model):
    """`helpline run` in development, with Telegram and Twilio set up against fake servers."""
    from tests.fake_providers import FakeTelegram, FakeTwilio
    from tests.live_server import start

    telegram, twilio = FakeTelegram(), FakeTwilio()
    server, stop = start(
        tmp_path_factory.mktemp("simulator"),
        {
            "HELPLINE_ENV": "development",
            "HELPLINE_SIMULATOR": "",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": "telegram-webhook-secret-0123",
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
    yield server, Simulator(server.base), telegram, twilio
    stop()
    telegram.close()
    twilio.close()


def _contact_and_replies(server, channel: str, worker: str):
    """The simulated worker's contact (language) and the replies stored for them, in order."""
    from bot import settings as settings_module
    from bot.store import Database
    from bot.store import repository as repo
    from bot.store.models import Contact, Message

    settings = settings_module.load({**os.environ, "HELPLINE_DATABASE_URL": server.database_url})
    db = Database(settings.database_url, settings.encryption_keys)
    try:
        pseudonym = repo.pseudonym(settings.pseudonym_key, channel, f"sim:{worker}")
        with db.session() as s:
            contact = s.query(Contact).filter_by(pseudonym=pseudonym).one()
            replies = [
                m.text
                for m in s.query(Message)
                .filter_by(contact_id=contact.id, direction="out", status="sent")
                .order_by(Message.id)
            ]
            return pseudonym, contact.language, contact.address, replies
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("language", ["bn", "vi"])
def test_sms_worker_gets_the_menu_in_sms_parts_in_their_language(sim, language):
    from actions import messages
    from bot.i18n import Translations

    server, simulator, _, _ = sim
    worker = simulator.new_worker("sms", language)
    assert worker["greeting"]["text"]
    received, _ = simulator.settle(worker)
    parts = [entry["text"] for entry in received]
    assert all(entry["kind"] == "sms" for entry in received)
    for entry in received:
        seg = segments(entry["text"])
        limit = 160 if seg.encoding == "GSM-7" else 70
        assert entry["sms"] == {"segments": seg.count, "encoding": seg.encoding,
                                "units": seg.units, "single_limit": limit}  # fmt: skip
        assert seg.count == 1  # one-segment parts
    # Exactly what Twilio would have been asked to send: each stored reply, split.
    _, contact_language, address, replies = _contact_and_replies(server, "sms", worker["worker"])
    assert address == f"sim:{worker['worker']}"
    assert parts == [part for reply in replies for part in split_for_sms(reply, 4)]
    assert any(p.startswith("(1/") for p in parts), parts  # the menu took several parts
    numbered = [re.match(r"\((\d+)/(\d+)\) ", p) for p in parts]
    assert all(int(m.group(1)) <= int(m.group(2)) <= 4 for m in numbered if m)
    # The conversation started in the language picked: the menu is the pack's.
    assert contact_language == language
    menu = Translations().text(language, messages.MENU)
    for line in menu.splitlines()[1:]:
        part = next((p for p in parts if line in p.splitlines() or f") {line}" in p), None)
        assert part is not None, (line, parts)  # a whole line, never cut
        assert segments(part).encoding == "UCS-2"  # Bengali script, Vietnamese diacritics


@pytest.mark.slow
def test_telegram_worker_gets_buttons_and_pressing_one_works(sim):
    server, simulator, _, _ = sim
    worker = simulator.new_worker("telegram", "en")
    received, _ = simulator.settle(worker)
    menu = next(e for e in reversed(received) if e["buttons"])
    expected = [[{"value": value, "label": f"{value} {label}"[:64]}]
                for value, label in buttons_of(menu["text"])]  # fmt: skip
    assert menu["buttons"] == expected
    assert [row[0]["value"] for row in menu["buttons"]][:6] == ["1", "2", "3", "4", "5", "6"]
    assert simulator.say(worker, callback="99") == 400  # never offered: Telegram cannot send it
    last = received[-1]["seq"]
    assert simulator.say(worker, callback="1") == 200
    after, _ = simulator.settle(worker, after=last)
    assert after and after[0]["text"] != menu["text"]
    pseudonym, *_ = _contact_and_replies(server, "telegram", worker["worker"])
    tracker = server.tracker(pseudonym)
    user = [e for e in tracker["events"] if e["event"] == "user"]
    assert user[-1]["text"] == "1" and user[-1]["input_channel"] == "telegram"


@pytest.mark.slow
def test_stop_holds_replies_until_start(sim):
    _, simulator, _, _ = sim
    worker = simulator.new_worker("sms", "en")
    received, _ = simulator.settle(worker)
    assert simulator.say(worker, text="STOP") == 200
    confirmed, queue = simulator.settle(worker, after=received[-1]["seq"], new=False)
    assert queue["opted_out"]
    last = (confirmed or received)[-1]["seq"]
    assert simulator.say(worker, text="hello") == 200
    nothing, queue = simulator.settle(worker, after=last, new=False)
    assert nothing == [] and queue["held"] >= 1  # answered, but held: not sent
    assert simulator.say(worker, text="START") == 200
    again, queue = simulator.settle(worker, after=last)
    assert again and not queue["opted_out"]


def _valid(extra=None):
    return {"channel": "sms", "worker": "123456789012", "text": "hi", **(extra or {})}


BAD_INPUT = [
    # label, method, path, raw body, content type
    ("not JSON", "POST", "webhook", b"{nope", "application/json"),
    ("not UTF-8", "POST", "webhook", b"\xff\xfe{}", "application/json"),
    ("a JSON array", "POST", "webhook", b"[]", "application/json"),
    ("no body", "POST", "webhook", b"", "application/json"),
    ("form, not JSON", "POST", "webhook", json.dumps(_valid()).encode(), "text/plain"),
    ("missing worker", "POST", "webhook", {"channel": "sms", "text": "hi"}, None),
    ("unknown channel", "POST", "webhook", _valid({"channel": "fax"}), None),
    ("worker not digits", "POST", "webhook", _valid({"worker": "abc"}), None),
    ("worker with a newline", "POST", "webhook", _valid({"worker": "123456789012\n"}), None),
    ("worker a number", "POST", "webhook", _valid({"worker": 123456789012}), None),
    ("worker a pseudonym", "POST", "webhook", _valid({"worker": "a1" * 32}), None),
    ("worker a simulator address", "POST", "webhook", _valid({"worker": "sim:123456789012"}),
     None),
    ("unknown field", "POST", "webhook", _valid({"admin": True}), None),
    ("text and callback", "POST", "webhook", _valid({"callback": "1"}), None),
    ("neither text nor callback", "POST", "webhook", {"channel": "sms", "worker": "1234567"},
     None),
    ("empty text", "POST", "webhook", _valid({"text": "   "}), None),
    ("text not a string", "POST", "webhook", _valid({"text": ["hi"]}), None),
    ("text too long", "POST", "webhook", _valid({"text": "a" * 4097}), None),
    ("callback on SMS", "POST", "webhook", {"channel": "sms", "worker": "1234567",
                                            "callback": "1"}, None),
    ("callback too long", "POST", "webhook", {"channel": "telegram", "worker": "1234567",
                                              "callback": "1" * 65}, None),
    ("callback never offered", "POST", "webhook", {"channel": "telegram", "worker": "1234567",
                                                   "callback": "1"}, None),
    ("new worker: unknown language", "POST", "workers", {"channel": "sms", "language": "xx"},
     None),
    ("new worker: no channel", "POST", "workers", {"language": "en"}, None),
    ("messages: no worker", "GET", "messages?channel=sms", None, None),
    ("messages: no channel", "GET", "messages?worker=1234567", None, None),
    ("messages: after negative", "GET", "messages?channel=sms&worker=1234567&after=-1", None,
     None),
    ("messages: after not a number", "GET", "messages?channel=sms&worker=1234567&after=x",
     None, None),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("label", "method", "path", "body", "content_type"), BAD_INPUT,
                         ids=[b[0] for b in BAD_INPUT])  # fmt: skip
def test_bad_input_is_a_clear_400(sim, label, method, path, body, content_type):
    _, simulator, _, _ = sim
    if isinstance(body, bytes):
        status, raw, _ = simulator.request(method, path, raw=body, content_type=content_type)
    else:
        status, raw, _ = simulator.request(method, path, body)
    assert status == 400, (label, raw)
    assert json.loads(raw)["error"]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["webhook", "workers"])
def test_a_body_over_64_kb_is_refused_before_it_is_read(sim, path):
    _, simulator, _, _ = sim
    raw = json.dumps(_valid({"text": "a" * 70000})).encode()
    status, body, _ = simulator.request("POST", path, raw=raw)
    assert status == 413 and json.loads(body)["error"]


@pytest.mark.slow
def test_the_page_is_one_self_contained_file(sim):
    _, simulator, _, _ = sim
    status, raw, headers = simulator.request("GET", "")
    page = raw.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert "<script src" not in page and ".innerHTML" not in page


@pytest.mark.slow
def test_real_providers_are_never_called_for_simulated_workers(sim):
    """Telegram and Twilio are configured, but only a real worker's reply reaches them."""
    from twilio.request_validator import RequestValidator

    server, simulator, telegram, twilio = sim
    worker = simulator.new_worker("whatsapp", "en")
    simulator.settle(worker)
    simulator.settle(simulator.new_worker("telegram", "en"))
    assert telegram.requests == [] and twilio.requests == []
    params = {"AccountSid": SID, "MessageSid": "SM" + "9" * 32, "To": "+15550001111",
              "From": PHONE, "Body": "hello", "NumMedia": "0"}  # fmt: skip
    url = f"{PUBLIC}/webhooks/twilio/webhook"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(AUTH).compute_signature(url, params),
    }
    request = urllib.request.Request(f"{server.base}/webhooks/twilio/webhook",
                                     data=urllib.parse.urlencode(params).encode(),
                                     headers=headers, method="POST")  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
    sent = twilio.wait_for("Messages.json", 1)
    assert sent and {r["To"] for r in sent} == {PHONE}
    assert simulator.received(worker)["messages"]  # the simulated worker's are all recorded


@pytest.mark.slow
def test_the_log_keeps_no_text_and_no_worker_id(sim):
    server, simulator, _, _ = sim
    worker = simulator.new_worker("sms", None)
    assert simulator.say(worker, text=SECRET_SENTENCE) == 200
    simulator.settle(worker)
    log = server.log.read_text(errors="replace")
    assert "simulator channel is off" not in log
    for secret in (SECRET_SENTENCE, worker["worker"], PHONE, TOKEN, AUTH):
        assert secret not in log, secret


@pytest.mark.slow
def test_the_simulator_is_off_in_production(tmp_path, model):
    import secrets

    from bot.store.crypto import generate_key
    from tests.live_server import start

    keys = {"HELPLINE_ENCRYPTION_KEY": generate_key(),
            "HELPLINE_PSEUDONYM_KEY": secrets.token_urlsafe(32)}  # fmt: skip
    server, stop = start(tmp_path, {"HELPLINE_ENV": "production", "HELPLINE_SIMULATOR": "", **keys})
    try:
        simulator = Simulator(server.base)
        for method, path, body in [
            ("GET", "", None),
            ("GET", "config", None),
            ("POST", "workers", {"channel": "sms", "language": "en"}),
            ("POST", "webhook", _valid()),
            ("GET", "messages?channel=sms&worker=123456789012", None),
        ]:
            status, raw, _ = simulator.request(method, path, body)
            assert status == 404, (path, raw)  # fmt: skip
    finally:
        stop()
    log = server.log.read_text(errors="replace")
    assert log.count("simulator channel is off (HELPLINE_ENV=production") == 1
    assert "/webhooks/simulator/" not in log  # the banner does not offer it


# --- in a real browser ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_newcomer_chats_in_the_browser(sim):
    """Pick SMS and Vietnamese, start, type; see the replies with their segments. Then Telegram:
    press a button."""
    chromium = find_chromium()
    from playwright.sync_api import expect, sync_playwright

    server, _, _, _ = sim
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("response", lambda r: r.ok or problems.append(f"{r.status} {r.url}"))
            page.goto(f"{server.base}/webhooks/simulator/")
            page.wait_for_selector("body[data-ready=true]")
            page.select_option("#channel", "sms")
            page.select_option("#language", "vi")
            page.click("#new-worker")
            bot = page.locator(".msg.bot")
            expect(bot.first).to_be_visible()
            expect(page.locator("#status")).to_have_text("")  # the queue is done with them
            before = bot.count()
            page.fill("#text", "tôi muốn hỏi về lương")
            page.click("#send")
            expect(page.locator(".msg.worker", has_text="tôi muốn hỏi về lương")).to_be_visible()
            expect(bot.nth(before)).to_be_visible()  # the reply
            meta = page.locator(".msg.bot .segments").last.inner_text()
            assert " segment" in meta and "UCS-2" in meta, meta
            assert page.locator(".msg.bot .segments").first.inner_text().startswith("1 segment")

            page.select_option("#channel", "telegram")
            page.select_option("#language", "en")
            page.click("#new-worker")
            buttons = page.locator(".keyboard button")
            expect(buttons.first).to_be_visible()
            expect(page.locator("#status")).to_have_text("")
            before = bot.count()
            buttons.first.click()
            expect(page.locator(".note", has_text="pressed")).to_be_visible()
            expect(bot.nth(before)).to_be_visible()
            assert page.locator("#error").inner_text() == ""
        finally:
            browser.close()
    assert problems == []
