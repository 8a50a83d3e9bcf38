"""`helpline run`: the Rasa server and the action server together, over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def server(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("server")
    endpoints = tmp / "endpoints.yml"
    endpoints.write_text(
        f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp / 'tracker.db'}\n"
    )
    port, actions_port = free_port(), free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            "--port",
            str(port),
            "--actions-port",
            str(actions_port),
            "--endpoints",
            str(endpoints),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RASA_TELEMETRY_ENABLED": "false"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            call(f"{base}/status", timeout=5)
            call(f"http://127.0.0.1:{actions_port}/health", timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("server did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(1)
    yield base, tmp / "server.log"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    log.close()


def test_parse_over_http(server):
    base, _ = server
    result = call(f"{base}/model/parse", {"text": "sahu le passport rakhyo"})
    assert result["intent"]["name"] == "documents"
    assert result["language"] == "ne"


def test_conversation_language_is_sticky(server):
    base, _ = server
    sender = "sticky-test"
    call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": "আমার বেতন দেয় নাই"})
    tracker = call(f"{base}/conversations/{sender}/tracker")
    assert tracker["slots"]["language"] == "bn"
    call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": "ok"})
    assert call(f"{base}/conversations/{sender}/tracker")["slots"]["language"] == "bn"
    call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": "English please"})
    assert call(f"{base}/conversations/{sender}/tracker")["slots"]["language"] == "en"


def test_message_text_is_not_logged_at_info(server):
    base, log = server
    call(f"{base}/webhooks/rest/webhook", {"sender": "log-test", "message": "madam hits me daily"})
    time.sleep(1)
    assert "madam hits me daily" not in log.read_text(errors="replace")
