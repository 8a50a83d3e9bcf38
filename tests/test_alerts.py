"""The caseworker alert webhook against a real HTTP server on loopback: it never blocks the
caller, signs a body that carries its own timestamp, retries, never loses an alert silently, and
goes only over https in production."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.emergency import WebhookNotifier, notifier_from_settings
from bot.settings import SettingsError, load
from bot.store.crypto import generate_key

EVENT = {"reason": "emergency", "case_ref": "HX-123456", "urgency": "immediate"}
SECRET = "k" * 8 + "Zq3_v9-Lw2Xr7Yt5Nc8Bm4Hd6Jf1Gs0P"
SLOW = 2.0  # seconds the slow receiver takes to answer


class Receiver:
    """An alert receiver on 127.0.0.1: answers each POST with the next status of ``statuses``
    (the last one repeats) after ``delay`` seconds, and keeps what it received."""

    def __init__(self, delay: float = 0.0, statuses: tuple[int, ...] = (204,)) -> None:
        self.delay, self.statuses = delay, list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:  # before answering: the sender is done once answered
                    receiver.received.append((dict(self.headers), body))
                    receiver.arrived.notify_all()
                time.sleep(receiver.delay)
                statuses = receiver.statuses
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict, bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.stop()


KEYS = {"HELPLINE_ENCRYPTION_KEY": generate_key(), "HELPLINE_PSEUDONYM_KEY": SECRET}


def notifier_from_env(environ: dict[str, str]):
    """The notifier as a process builds it: settings (checked at load), then the notifier."""
    return notifier_from_settings(load({**KEYS, **environ}))


def development(url: str, secret: str = SECRET) -> dict[str, str]:
    return {"HELPLINE_ENV": "development", "HELPLINE_NOTIFY_WEBHOOK": url,
            "HELPLINE_NOTIFY_SECRET": secret}  # fmt: skip


def signature_ok(headers: dict, body: bytes, secret: str = SECRET) -> bool:
    """What a receiver does: the HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Helpline-Signature", ""))


def test_the_alert_returns_at_once_while_the_receiver_is_slow(receiver):
    server = receiver(delay=SLOW)
    notifier = notifier_from_env(development(server.url))
    assert isinstance(notifier, WebhookNotifier)
    before = time.time()
    started = time.monotonic()
    notifier.alert(EVENT)
    took = time.monotonic() - started
    assert took < SLOW / 10, f"alert() took {took:.2f} s: it waited for the receiver"

    headers, body = server.wait_for(1)[0]
    notifier.close()
    assert signature_ok(headers, body)
    sent = json.loads(body)
    assert {k: sent[k] for k in EVENT} == EVENT
    assert before - 1 <= sent["sent_at"] <= time.time() + 1  # Unix seconds, inside the HMAC
    assert isinstance(sent["sent_at"], int)
    assert len(sent["alert_id"]) == 32
    assert set(sent) == {*EVENT, "sent_at", "alert_id"}


def test_an_action_that_alerts_does_not_wait_for_the_receiver(receiver, services, monkeypatch):
    """The emergency action through the services' own notifier (notifier_from_env)."""
    from actions import actions as a
    from actions import services as services_module
    from tests.test_actions import run, tracker

    server = receiver(delay=SLOW)
    for name, value in development(server.url).items():
        monkeypatch.setenv(name, value)
    settings = load()  # the environment just set, as the action server reads it
    services_module.use(services_module.Services(settings, database=services.database))
    started = time.monotonic()
    run(a.ActionEmergency(), tracker("they locked us in, help", "emergency"))
    took = time.monotonic() - started
    assert took < SLOW / 2, f"the action took {took:.2f} s: it waited for the receiver"

    headers, body = server.wait_for(1)[0]
    services_module.get().notifier.close()
    assert signature_ok(headers, body)
    assert json.loads(body)["reason"] == "emergency"


def test_the_timestamp_is_the_time_of_each_attempt_and_the_id_stays(receiver):
    """A retry is signed afresh with its own time (a receiver's 5-minute window still takes
    it) and the same alert_id (the receiver drops a duplicate)."""
    server = receiver(statuses=(503, 204))
    times = iter([1_700_000_000, 1_700_000_090])
    notifier = WebhookNotifier(server.url, SECRET, retry_seconds=0.05, clock=lambda: next(times))
    notifier.alert(EVENT)
    (first_headers, first), (headers, second) = server.wait_for(2)
    notifier.close()
    assert signature_ok(first_headers, first) and signature_ok(headers, second)
    first, second = json.loads(first), json.loads(second)
    assert (first["sent_at"], second["sent_at"]) == (1_700_000_000, 1_700_000_090)
    assert first["alert_id"] == second["alert_id"]


@pytest.mark.parametrize("status", [500, 302])
def test_a_failing_receiver_is_logged_without_content_after_the_retries(receiver, status, caplog):
    """A 302 counts as a failure: followed, it would become a GET without the alert."""
    server = receiver(statuses=(status,))
    notifier = WebhookNotifier(server.url, SECRET, attempts=3, retry_seconds=0.05)
    with caplog.at_level(logging.WARNING, logger="bot.emergency"):
        notifier.alert(EVENT)
        notifier.close(timeout=10)
    assert len(server.received) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "ALERT " + json.dumps(EVENT, sort_keys=True)  # the caseworkers' copy
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "alert webhook failed 3 times (HTTPError):"
        " the emergency alert of HX-123456 is in the log only"
    ]


def test_a_receiver_that_is_down_never_raises(caplog):
    notifier = WebhookNotifier("http://127.0.0.1:9/alerts", timeout=2, retry_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="bot.emergency"):
        notifier.alert(EVENT)
        notifier.close(timeout=10)
    assert any(r.getMessage().startswith("ALERT ") for r in caplog.records)
    assert any("alert webhook failed 3 times" in r.getMessage() for r in caplog.records)


def test_a_full_queue_loses_no_alert_silently(receiver, caplog):
    server = receiver(delay=0.3)
    notifier = WebhookNotifier(server.url, SECRET, queue_size=1)
    with caplog.at_level(logging.WARNING, logger="bot.emergency"):
        for _ in range(4):
            notifier.alert(EVENT)
        notifier.close(timeout=10)
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert full and all(r.levelno == logging.ERROR for r in full)
    assert "immediate" not in full[0].getMessage()  # a reference, never the alert's content
    assert len(server.received) + len(full) == 4
    assert sum(r.getMessage().startswith("ALERT ") for r in caplog.records) == 4


def test_exit_waits_for_queued_alerts_and_logs_those_it_cannot_send(receiver, caplog):
    server = receiver(delay=0.5)
    notifier = WebhookNotifier(server.url, SECRET)
    notifier.alert(EVENT)
    notifier.close(timeout=10)
    assert len(server.received) == 1  # close() waited for it

    slow = receiver(delay=1.0)
    notifier = WebhookNotifier(slow.url, SECRET)
    with caplog.at_level(logging.ERROR, logger="bot.emergency"):
        notifier.alert(EVENT)
        notifier.close(timeout=0.2)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "1 alerts not sent to the webhook before exit: they are in the log"
    ]
    notifier.close(timeout=5)  # nothing left for the end of the test run


@pytest.mark.parametrize(
    ("env", "url", "secret", "refused"),
    [
        ("production", "http://alerts.example.org/hook", SECRET, "https:// URL in production"),
        (None, "http://alerts.example.org/hook", SECRET, "https:// URL in production"),
        ("production", "http://127.0.0.1:8080/hook", SECRET, "https:// URL in production"),
        ("production", "https://alerts.example.org/hook", "", "HELPLINE_NOTIFY_SECRET"),
        ("production", "ftp://alerts.example.org/hook", SECRET, "https://"),
        ("development", "http://alerts.example.org/hook", SECRET, "except to 127.0.0.1"),
        ("development", "http://localhost:8080/hook", "", None),
        ("development", "http://[::1]:8080/hook", "", None),
        ("production", "https://alerts.example.org/hook", SECRET, None),
    ],
)
def test_https_in_production_http_only_to_loopback_in_development(env, url, secret, refused):
    environ = {"HELPLINE_NOTIFY_WEBHOOK": url, "HELPLINE_NOTIFY_SECRET": secret}
    if env:
        environ["HELPLINE_ENV"] = env
    if refused:
        with pytest.raises(SettingsError, match=refused):  # at start-up, not at the 1st alert
            notifier_from_env(environ)
    else:
        assert isinstance(notifier_from_env(environ), WebhookNotifier)
