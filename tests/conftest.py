"""Shared fixtures. Network access beyond loopback is a test failure."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# No HELPLINE_ENV means production (keys required, Rasa's API and the REST channel off): the
# tests run as `make run` does, in development, unless a test says otherwise.
os.environ.setdefault("HELPLINE_ENV", "development")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch):
    """Only loopback connections: a test that reaches the internet fails instead of hanging."""
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("localhost", "::1") or sock.family == socket.AF_UNIX
        ):
            raise RuntimeError(f"test tried to reach {host}: network access is not allowed")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    # Rasa's telemetry would try to phone home.
    monkeypatch.setenv("RASA_TELEMETRY_ENABLED", "false")


@pytest.fixture(scope="session")
def model() -> Path:
    """The real model, trained on every locale pack. models/ is the product's own model folder:
    an up-to-date model is reused, not retrained."""
    from bot import cli

    return cli.train(models_dir=ROOT / "models")


@pytest.fixture(scope="session")
def live(tmp_path_factory, model):
    """One `helpline run` for the session's end-to-end tests (see tests/live_server.py)."""
    from tests.live_server import start

    server, stop = start(tmp_path_factory.mktemp("live"))
    yield server
    stop()


@pytest.fixture
def services(tmp_path):
    """The actions' services on a fresh SQLite case store, with a notifier that records."""
    from actions import services as services_module
    from bot import settings as settings_module
    from bot.emergency import Notifier
    from bot.store import Database

    class RecordingNotifier(Notifier):
        def __init__(self) -> None:
            self.alerts: list[dict] = []

        def alert(self, event: dict) -> None:
            self.alerts.append(event)

    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp_path}/cases.db"}
    )
    db = Database(settings.database_url, settings.encryption_keys)
    db.upgrade()
    svc = services_module.Services(settings, database=db, notifier=RecordingNotifier())
    services_module.use(svc)
    yield svc
    services_module.use(None)
    db.dispose()
