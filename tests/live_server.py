"""`helpline run` as a fixture: the Rasa server (its actions in process, or an action server with
HELPLINE_ACTIONS_IN_PROCESS=false) and a case store of its own,
over real HTTP on loopback."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class LiveServer:
    def __init__(self, base: str, log: Path, database_url: str, process=None) -> None:
        self.base = base
        self.log = log
        self.database_url = database_url
        self.process = process  # the `helpline run` subprocess.Popen (its own process group)

    def say(self, sender: str, text: str) -> list[str]:
        """What the worker gets back for ``text``."""
        replies = call(f"{self.base}/webhooks/rest/webhook", {"sender": sender, "message": text})
        return [r["text"] for r in replies if "text" in r]

    def tracker(self, sender: str) -> dict:
        return call(f"{self.base}/conversations/{sender}/tracker")


def start(
    tmp: Path,
    extra_env: dict | None = None,
    sql_tracker_store: bool = True,
    log_name: str = "server.log",
    dashboard_port: int = 0,
    database_url: str | None = None,
    extra_args: tuple[str, ...] = (),
):
    """Starts `helpline run`; returns (LiveServer, stop function). Without
    ``sql_tracker_store`` Rasa keeps trackers in memory (as a stock project does). The case
    store and the tracker store are files in ``tmp``: starting again on the same ``tmp`` (with
    another ``log_name``, to keep the first run's log) resumes on the same databases."""
    endpoints = tmp / "endpoints.yml"
    endpoints.write_text(
        "tracker_store:\n  type: bot.tracker_store.HelplineTrackerStore\n  dialect: sqlite\n"
        f"  db: {tmp / 'tracker.db'}\n"
        if sql_tracker_store
        else "{}\n"
    )
    # Another database (PostgreSQL) takes the tracker store with it (bot/scaling.py).
    database_url = database_url or f"sqlite:///{tmp / 'cases.db'}"
    port, actions_port = free_port(), free_port()
    log_path = tmp / log_name
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(port),
         "--actions-port", str(actions_port), "--endpoints", str(endpoints),
         "--dashboard-port", str(dashboard_port), *extra_args],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "RASA_TELEMETRY_ENABLED": "false",
            "HELPLINE_DATABASE_URL": database_url,
            **(extra_env or {}),
        },
    )  # fmt: skip

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        log.close()

    from bot.settings import flag

    actions_in_process = flag(
        (extra_env or {}).get("HELPLINE_ACTIONS_IN_PROCESS")
        or os.environ.get("HELPLINE_ACTIONS_IN_PROCESS"),
        default=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            # "/" (Rasa's health check) is served in production too, once the model is loaded.
            urllib.request.urlopen(f"{base}/", timeout=5).read()
            if not actions_in_process:
                call(f"http://127.0.0.1:{actions_port}/health", timeout=5)
            if dashboard_port:
                urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/healthz", timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop()
                pytest.fail("server did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(1)
    return LiveServer(base, log_path, database_url, proc), stop


def rasa_sdk_in_thread():
    """Rasa SDK's own app with our actions, served in a thread's event loop on loopback (the
    real action server's code, in this process: a test's monkeypatch reaches it). A generator:
    yields the webhook URL, stops the server after."""
    import asyncio
    import threading

    from rasa_sdk.endpoint import create_app
    from sanic import Sanic
    from sanic.touchup import TouchUp

    loop = asyncio.new_event_loop()
    port = free_port()
    # Sanic keeps every app by name for the process: another test's rasa_sdk app may be there.
    Sanic._app_registry.pop("rasa_sdk", None)
    app = create_app("actions")
    # Sanic's "touch-up" recompiles some of its own methods when an app starts; a second app
    # started after another test's fails in it. Once done in this process, it is skipped.
    touched = any(getattr(target, "__touched__", False) for target, _ in TouchUp._registry)
    touch_up = TouchUp.run
    if touched:
        TouchUp.run = classmethod(lambda cls, app: None)
    try:
        server = loop.run_until_complete(
            app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
        )
        loop.run_until_complete(server.startup())
    finally:
        TouchUp.run = touch_up
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/webhook"
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
