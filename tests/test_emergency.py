"""Caseworker alerts: the log line and the signed webhook (a real HTTP server on loopback)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bot.emergency import LogNotifier, WebhookNotifier, notifier_from_env

EVENT = {"reason": "emergency", "case_ref": "HX-123456", "urgency": "immediate"}


def test_log_notifier_writes_one_line_without_personal_data(caplog):
    with caplog.at_level(logging.WARNING):
        LogNotifier().alert(EVENT)
    assert caplog.records[-1].getMessage() == "ALERT " + json.dumps(EVENT, sort_keys=True)


def test_webhook_notifier_posts_signed_json():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers.get("X-Helpline-Signature"), body))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
        notifier = notifier_from_env(
            {"HELPLINE_NOTIFY_WEBHOOK": url, "HELPLINE_NOTIFY_SECRET": "k"}
        )
        assert isinstance(notifier, WebhookNotifier)
        notifier.alert(EVENT)
    finally:
        server.shutdown()
    signature, body = received[0]
    assert json.loads(body) == EVENT
    assert signature == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_webhook_down_never_raises_and_the_log_keeps_the_alert(caplog):
    with caplog.at_level(logging.WARNING):
        WebhookNotifier("http://127.0.0.1:9/alerts", timeout=2).alert(EVENT)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ALERT ") for m in messages)
    assert any("alert webhook failed" in m for m in messages)
