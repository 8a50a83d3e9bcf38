"""No conversation in clear, anywhere: a whole run through the real server.

A worker writes by SMS through the Twilio webhook (Twilio is a fake server on loopback): a
message with a unique marker and a phone number typed in it, an intake answer with another
marker, then words of danger, which open a case and send its secret code. Afterwards every file
the run left in its folder (the case store, Rasa's tracker store, their WAL, shared-memory and
journal files, the server's log) is read as bytes: neither marker nor either phone number is in
any of them, and the reply with the case secret is not in the tracker store's files. The
conversation is there all the same, encrypted: read back with the keys, it has both markers.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from pathlib import Path

import pytest

from bot import settings as settings_module
from bot.store.crypto import FieldCipher
from tests.fake_providers import FakeTwilio, signed_twilio_post
from tests.live_server import start

pytestmark = pytest.mark.slow

SID = "AC" + "5" * 32
AUTH = "twilio-auth-token-privacy"
PUBLIC = "https://helpline.example.org"
NUMBER = "+15550003333"
SECRET_REPLY = re.compile(r"secret code is (\d+)")


@pytest.fixture(scope="module")
def run(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("privacy")
    twilio = FakeTwilio()
    server, stop = start(
        tmp,
        {
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": AUTH,
            "TWILIO_SMS_NUMBER": NUMBER,
            "TWILIO_API_BASE": twilio.url,
            "HELPLINE_PUBLIC_URL": PUBLIC,
        },
    )
    yield tmp, server, twilio, stop
    stop()
    twilio.close()


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


def test_no_words_number_answer_or_secret_in_clear_in_any_file(run):
    tmp, server, twilio, stop = run
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
    cipher = FieldCipher(settings_module.load({"HELPLINE_ENV": "development"}).encryption_keys)
    with sqlite3.connect(tmp / "tracker.db") as connection:
        rows = [data for (data,) in connection.execute("SELECT data FROM events")]
    events = "\n".join(cipher.decrypt(data) for data in rows)
    assert said in events and answered in events and secret_said in events
