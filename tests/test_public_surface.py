"""The server as the internet sees it in production (`helpline run`, HELPLINE_ENV=production),
and what it leaves on disk. One server start for both (a live server costs ~40 s).

The port that Twilio and Telegram reach serves the channel webhooks and the health check only:
every route of Rasa's HTTP API, the REST channel (where any ``sender`` can act as any worker)
and the web simulator are refused, while a signed Twilio message is still answered. Nothing of
ours listens on an address other than loopback, and the start-up banner says what is served.

No conversation in clear, anywhere: a worker writes by SMS through the Twilio webhook (Twilio is
a fake server on loopback): a message with a unique marker and a phone number typed in it, an
intake answer with another marker, then words of danger, which open a case and send its secret
code. Afterwards every file the run left in its folder (the case store, Rasa's tracker store,
their WAL, shared-memory and journal files, the server's log) is read as bytes: neither marker
nor either phone number is in any of them, and the reply with the case secret is not in the
tracker store's files. The conversation is there all the same, encrypted: read back with the
keys, it has both markers. That test stops the server: it runs last.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.store.crypto import FieldCipher, generate_key
from tests.fake_providers import FakeTelegram, FakeTwilio, signed_twilio_post
from tests.live_server import free_port, start

pytestmark = pytest.mark.slow

SID = "AC" + "3" * 32
AUTH = "twilio-auth-token-" + secrets.token_hex(8)
PUBLIC = "https://helpline.example.org"
NUMBER = "+15550001111"
KEY = generate_key()
SECRET_REPLY = re.compile(r"secret code is (\d+)")

# (method, path, body): Rasa 3.6's HTTP API (rasa/server.py) and the unsafe channels.
REFUSED = [
    ("GET", "/status", None),
    ("GET", "/version", None),
    ("GET", "/domain", None),
    ("GET", "/conversations/someone/tracker", None),
    ("POST", "/conversations/someone/tracker/events", [{"event": "restart"}]),
    ("PUT", "/conversations/someone/tracker/events", []),
    ("POST", "/conversations/someone/messages", {"text": "hi", "sender": "user"}),
    ("POST", "/conversations/someone/trigger_intent", {"name": "greet"}),
    ("POST", "/conversations/someone/execute", {"name": "action_listen"}),
    ("POST", "/conversations/someone/predict", None),
    ("GET", "/conversations/someone/story", None),
    ("POST", "/model/parse", {"text": "hello"}),
    ("PUT", "/model", {"model_file": "/tmp/evil.tar.gz"}),
    ("DELETE", "/model", None),
    ("POST", "/model/train", {}),
    ("POST", "/model/test/intents", {}),
    ("POST", "/model/test/stories", {}),
    ("POST", "/model/predict", {}),
    ("POST", "/webhooks/rest/webhook", {"sender": "someone", "message": "hello"}),
    ("GET", "/webhooks/rest/", None),
    ("GET", "/webhooks/simulator/", None),
    ("POST", "/webhooks/simulator/send", {"worker": "a", "text": "hello"}),
]


def request(base: str, method: str, path: str, body=None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net shows them) that listen on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state = fields[1], fields[3]
            host, hex_port = address.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(host)
    return found


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1


@pytest.fixture(scope="module")
def production(tmp_path_factory, model):
    telegram, twilio = FakeTelegram(), FakeTwilio()
    dashboard_port = free_port()
    tmp = tmp_path_factory.mktemp("production")
    server, stop = start(
        tmp,
        {
            "HELPLINE_ENV": "production",
            "HELPLINE_ENCRYPTION_KEY": KEY,
            "HELPLINE_PSEUDONYM_KEY": secrets.token_urlsafe(32),
            "HELPLINE_SIMULATOR": "",
            "TELEGRAM_BOT_TOKEN": "123456:" + secrets.token_hex(8),
            "TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(32),
            "TELEGRAM_API_BASE": telegram.url,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": AUTH,
            "TWILIO_SMS_NUMBER": NUMBER,
            "TWILIO_API_BASE": twilio.url,
            "HELPLINE_PUBLIC_URL": PUBLIC,
        },
        dashboard_port=dashboard_port,
    )
    yield server, twilio, dashboard_port, tmp, stop
    stop()
    telegram.close()
    twilio.close()


def test_rasa_api_rest_channel_and_simulator_are_refused(production):
    server, *_ = production
    answered = {
        (method, path): status
        for method, path, body in REFUSED
        if (status := request(server.base, method, path, body)[0]) not in (404, 405)
    }
    assert answered == {}, f"reachable in production: {answered}"


def test_the_health_check_and_the_webhooks_answer(production):
    server, twilio, *_ = production
    assert request(server.base, "GET", "/")[0] == 200
    status, body = request(server.base, "GET", "/webhooks/twilio/")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    form = {"AccountSid": SID, "MessageSid": "SM" + "1" * 32, "From": "+60123450001",
            "To": "+15550001111", "Body": "hello"}  # fmt: skip
    assert signed_twilio_post(server.base, form, auth_token=AUTH, public_url=PUBLIC) == 200
    assert twilio.wait_for("Messages.json", 1)  # answered, in production
    forged = signed_twilio_post(server.base, form, auth_token="wrong", public_url=PUBLIC)
    assert forged == 403


def test_everything_listens_on_loopback_only(production):
    server, _, dashboard_port, *_ = production
    port = int(server.base.rsplit(":", 1)[1])
    log = server.log.read_text(errors="replace")
    assert "with its actions in the same process" in log  # no action server port at all
    for name, p in (("rasa", port), ("dashboard", dashboard_port)):
        addresses = listening(p)
        assert addresses and addresses <= LOOPBACK_HEX, (name, addresses)


def test_the_banner_tells_the_truth(production):
    server, *_ = production
    log = server.log.read_text(errors="replace")
    assert "The helpline (production) is starting" in log
    assert "Rasa's HTTP API and the REST channel are off; the web simulator is off" in log
    assert "/model/parse" not in log and "webhooks/rest" not in log
    assert "Action endpoint is up and running" not in log  # the actions run inside Rasa


# --- what the run leaves on disk (stops the server: last) ------------------------------------


def _phone(prefix: str) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(7))


def _replies(twilio, phone: str, more_than: int, timeout: float = 120) -> list[str]:
    """Every SMS sent to ``phone``, once more than ``more_than`` arrived and 3 s passed quietly."""
    deadline = time.monotonic() + timeout
    last, since, bodies = -1, time.monotonic(), []
    while time.monotonic() < deadline:
        bodies = [r["params"]["Body"] for r in twilio.requests if r["params"].get("To") == phone]
        if len(bodies) != last:
            last, since = len(bodies), time.monotonic()
        elif len(bodies) > more_than and time.monotonic() - since > 3:
            break
        time.sleep(0.2)
    return bodies


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_no_words_number_answer_or_secret_in_clear_in_any_file(production):
    server, twilio, _, tmp, stop = production
    phone, typed = _phone("+6017"), _phone("+6019")
    said, answered = "zq" + secrets.token_hex(6), "zq" + secrets.token_hex(6)
    conversation = [
        f"My employer has not paid my salary for three months {said}, call me on {typed}",
        "3",  # Hong Kong, if the country is asked
        "1",  # report this problem
        f"The agent {answered} takes half of my salary every month",
        "they locked us in the dormitory and beat my friend, please help",
    ]
    bodies: list[str] = []
    for text in conversation:
        form = {"AccountSid": SID, "MessageSid": f"SM{secrets.token_hex(16)}", "To": NUMBER,
                "From": phone, "Body": text, "NumMedia": "0"}  # fmt: skip
        assert signed_twilio_post(server.base, form, auth_token=AUTH, public_url=PUBLIC) == 200
        bodies = _replies(twilio, phone, len(bodies))
    case_filed = [b for b in bodies if SECRET_REPLY.search(b)]
    assert case_filed, bodies  # the danger opened a case and its secret was sent
    secret_said = SECRET_REPLY.search(case_filed[0]).group(0)
    running = _files(tmp)  # the live WAL and journal files too
    stop()  # then every file closed and checkpointed, as a stolen backup would have them
    for files in (running, _files(tmp)):
        assert {"cases.db", "tracker.db", "server.log"} <= set(files), sorted(files)
        for name, content in files.items():
            for clear in (said, answered, typed, typed[1:], phone, phone[1:]):
                assert clear.encode() not in content, (name, clear)
            if name.startswith("tracker.db"):
                assert case_filed[0].encode() not in content, name
                assert secret_said.encode() not in content, name

    # Not lost: Rasa's store has the whole conversation, encrypted with the case store's keys.
    cipher = FieldCipher([KEY])
    with sqlite3.connect(tmp / "tracker.db") as connection:
        rows = [data for (data,) in connection.execute("SELECT data FROM events")]
    events = "\n".join(cipher.decrypt(data) for data in rows)
    assert said in events and answered in events and secret_said in events
