"""The server as the internet sees it in production (`helpline run`, HELPLINE_ENV=production).

The port that Twilio and Telegram reach serves the channel webhooks and the health check only:
every route of Rasa's HTTP API, the REST channel (where any ``sender`` can act as any worker)
and the web simulator are refused, while a signed Twilio message is still answered. Nothing of
ours listens on an address other than loopback, and the start-up banner says what is served.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.store.crypto import generate_key
from tests.fake_providers import FakeTelegram, FakeTwilio, signed_twilio_post
from tests.live_server import free_port, start

pytestmark = pytest.mark.slow

SID = "AC" + "3" * 32
AUTH = "twilio-auth-token-" + secrets.token_hex(8)
PUBLIC = "https://helpline.example.org"

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
    server, stop = start(
        tmp_path_factory.mktemp("production"),
        {
            "HELPLINE_ENV": "production",
            "HELPLINE_ENCRYPTION_KEY": generate_key(),
            "HELPLINE_PSEUDONYM_KEY": secrets.token_urlsafe(32),
            "HELPLINE_SIMULATOR": "",
            "TELEGRAM_BOT_TOKEN": "123456:" + secrets.token_hex(8),
            "TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(32),
            "TELEGRAM_API_BASE": telegram.url,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": AUTH,
            "TWILIO_SMS_NUMBER": "+15550001111",
            "TWILIO_API_BASE": twilio.url,
            "HELPLINE_PUBLIC_URL": PUBLIC,
        },
        log_name="production.log",
        dashboard_port=dashboard_port,
    )
    yield server, twilio, dashboard_port
    stop()
    telegram.close()
    twilio.close()


def test_rasa_api_rest_channel_and_simulator_are_refused(production):
    server, _, _ = production
    answered = {
        (method, path): status
        for method, path, body in REFUSED
        if (status := request(server.base, method, path, body)[0]) not in (404, 405)
    }
    assert answered == {}, f"reachable in production: {answered}"


def test_the_health_check_and_the_webhooks_answer(production):
    server, twilio, _ = production
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
    server, _, dashboard_port = production
    port = int(server.base.rsplit(":", 1)[1])
    log = server.log.read_text(errors="replace")
    actions_port = int(log.split("action server on\n127.0.0.1:")[1].split(" ")[0])
    for name, p in (("rasa", port), ("actions", actions_port), ("dashboard", dashboard_port)):
        addresses = listening(p)
        assert addresses and addresses <= LOOPBACK_HEX, (name, addresses)


def test_the_banner_tells_the_truth(production):
    server, _, _ = production
    log = server.log.read_text(errors="replace")
    assert "The helpline (production) is starting" in log
    assert "Rasa's HTTP API and the REST channel are off; the web simulator is off" in log
    assert "/model/parse" not in log and "webhooks/rest" not in log
    assert "Action endpoint is up and running on http://127.0.0.1:" in log
