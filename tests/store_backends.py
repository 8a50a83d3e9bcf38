"""Real SQLite and PostgreSQL databases for store tests.

PostgreSQL is the one running on 127.0.0.1:5432 (trust auth), or HELPLINE_TEST_POSTGRES_URL.
If it is down, the tests try to start it; if that fails they skip loudly, except under CI
(CI=true), where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

import glob
import os
import secrets
import subprocess

import pytest
from sqlalchemy import create_engine, text

ADMIN_URL = os.environ.get(
    "HELPLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _reachable(url: str) -> bool:
    try:
        engine = create_engine(url, future=True)
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def _try_start() -> None:
    for version in glob.glob("/etc/postgresql/*"):
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                os.path.basename(version),
                "main",
                "start",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )


def postgres_database() -> tuple[str, callable]:
    """A new, empty database; returns its URL and a function that drops it."""
    if not _reachable(ADMIN_URL):
        _try_start()
    if not _reachable(ADMIN_URL):
        message = f"PostgreSQL not reachable at {ADMIN_URL} and could not be started"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip("!!! " + message + " !!!")
    name = f"helpline_test_{secrets.token_hex(4)}"
    admin = create_engine(ADMIN_URL, future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop
