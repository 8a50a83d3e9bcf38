"""Logs without personal data, and a console an operator can read (bot/logs.py).

An action's exception goes through the real Rasa SDK server (its Sanic app, in this process, on
loopback) and back through Rasa's ``RemoteAction``: neither side's log may quote the worker.
The console of a process is checked in a subprocess, as an operator would see it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import subprocess
import sys
import textwrap

import pytest

from actions import dialogue
from actions import messages as m
from bot import logs
from bot.channels.inbox import MESSAGE_ID_PREFIX, RASA_ACTION_FAILED
from bot.i18n import Translations
from tests.live_server import ROOT, rasa_sdk_in_thread

CASE = "HX-123456"


@pytest.fixture(scope="module")
def action_server():
    """Rasa SDK's own app with our actions, in this process (tests/live_server.py)."""
    logs.install_filter()
    yield from rasa_sdk_in_thread()


def _run_remote(url: str, text: str, message_id: str, slots: dict):
    """Rasa's side: the ``RemoteAction`` that Rasa's processor runs, with a tracker of ours."""
    from rasa.core.actions.action import RemoteAction
    from rasa.core.channels.channel import CollectingOutputChannel
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa.utils.endpoints import EndpointConfig

    domain = Domain.load(str(ROOT / "domain.yml"))
    parse = {"text": text, "intent": {"name": "greet", "confidence": 0.9}, "entities": []}
    events = [UserUttered(text, parse["intent"], [], parse, message_id=message_id)]
    events += [SlotSet(name, value) for name, value in slots.items()]
    tracker = DialogueStateTracker.from_events("worker-" + secrets.token_hex(4), events)
    action = RemoteAction("action_greet", EndpointConfig(url))
    output = CollectingOutputChannel()
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    return asyncio.run(action.run(output, nlg, tracker, domain)), output


@pytest.fixture
def broken_menu(monkeypatch):
    """The greeting fails with the worker's words in the exception's message."""
    marker = "zq" + secrets.token_hex(6)

    def fail(turn, greeting=False):
        raise ValueError(f"cannot show the menu for {turn.text!r} {marker}")

    monkeypatch.setattr(dialogue, "show_menu", fail)
    return marker


def test_a_queued_messages_action_error_logs_no_tracker_and_the_queue_retries(
    services, action_server, broken_menu, caplog
):
    caplog.set_level(logging.DEBUG)
    text = f"my passport {broken_menu}"
    with pytest.raises(Exception) as failure:
        _run_remote(action_server, text, f"{MESSAGE_ID_PREFIX}7", {"case_ref": CASE})
    # Logged exactly as Rasa's processor logs a failed action (rasa/core/processor.py,
    # _run_action), whose traceback would quote the action server's answer: the tracker.
    assert broken_menu in str(failure.value.__cause__)  # the answer did carry it
    try:
        raise failure.value
    except Exception:
        logging.getLogger("rasa.core.processor").exception(
            f"{RASA_ACTION_FAILED} 'action_greet'.Bot will continue, but the actions events are "
            "lost. Please check the logs of your action server for more information."
        )
    assert broken_menu not in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name == "actions.actions"]
    assert ours == [f"action action_greet failed (ValueError), case {CASE}"]
    # The queue's watch (bot.channels.inbox) still sees the failure: the message is retried.
    processor = [r for r in caplog.records if r.name == "rasa.core.processor"]
    assert [str(r.msg).startswith(RASA_ACTION_FAILED) for r in processor] == [True]
    assert processor[0].exc_info is None
    assert "RasaException <- ClientResponseError" in processor[0].getMessage()


def test_elsewhere_an_action_error_is_an_apology_and_logs_no_text(
    services, action_server, broken_menu, caplog
):
    caplog.set_level(logging.DEBUG)
    events, _ = _run_remote(
        action_server, f"hello {broken_menu}", "rest-1", {"language": "bn", "case_ref": "x y"}
    )
    said = [e.text for e in events if e.type_name == "bot"]
    assert said == [Translations().text("bn", m.NOT_UNDERSTOOD)]
    assert broken_menu not in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name == "actions.actions"]
    assert ours == ["action action_greet failed (ValueError)"]  # not a case reference: not said


def test_rasa_records_that_quote_a_worker_are_neutralised():
    logs.install_filter()
    marker = "zq" + secrets.token_hex(6)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    names = ("rasa.core.processor", "rasa.core.channels.rest", "rasa_sdk.executor", "rasa.server")
    for name in names:
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        logging.getLogger("rasa.core.processor").debug(f"processor.message.parse text={marker}")
        logging.getLogger("rasa_sdk.executor").debug(f"Contents of ignored event: '{marker}'")
        logging.getLogger("rasa.core.channels.rest").error(
            f'{{"text": "{marker}", "event": "rest.message.received.failure", "level": "error"}}'
        )
        logging.getLogger("rasa.server").error(
            f'Traceback (most recent call last):\n  File "x"\nKeyError: "{marker}"'
        )
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert records == ["rest.message.received.failure", "error (KeyError)"]


def test_telemetry_is_off_unless_the_operator_set_it(monkeypatch):
    import rasa.telemetry

    monkeypatch.delenv("RASA_TELEMETRY_ENABLED", raising=False)
    logs.telemetry_off()
    assert os.environ["RASA_TELEMETRY_ENABLED"] == "false"
    assert not rasa.telemetry.is_telemetry_enabled()
    monkeypatch.setenv("RASA_TELEMETRY_ENABLED", "true")
    logs.telemetry_off()
    assert rasa.telemetry.is_telemetry_enabled()


CONSOLE = textwrap.dedent(
    """
    import logging, warnings
    from bot import logs
    logs.configure("test")
    import sanic_cors  # Sanic shows every DeprecationWarning "once"; sanic_cors raises one
    from rasa.shared.core.slot_mappings import validate_slot_mappings
    validate_slot_mappings({})  # "Slot auto-fill has been removed in 3.0": Rasa's advice
    warnings.warn_explicit("ours to fix", DeprecationWarning, "{ours}", 1, module="bot.cli")
    warnings.warn("a library's real problem", UserWarning)
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate")
    logging.getLogger("rasa_sdk.executor").info("Registered function for 'action_greet'.")
    logging.getLogger("httpx").info("HTTP Request: POST https://x/bot123:secret/sendMessage")
    logging.getLogger("bot.channels.base").info("telegram channel is on")
    logging.getLogger("actions.actions").info("an action line")
    import os; print("telemetry", os.environ["RASA_TELEMETRY_ENABLED"])
    """
)


def test_the_console_shows_ours_and_hides_library_noise():
    env = {k: v for k, v in os.environ.items() if k not in ("RASA_TELEMETRY_ENABLED",
                                                           "PYTHONWARNINGS")}  # fmt: skip
    code = CONSOLE.replace("{ours}", str(ROOT / "bot" / "cli.py"))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    console = done.stdout + done.stderr
    for hidden in ("distutils", "Slot auto-fill", "setup plugin", "Registered function",
                   "HTTP Request", "secret"):  # fmt: skip
        assert hidden not in console, console
    for shown in ("ours to fix", "a library's real problem", "telegram channel is on",
                  "an action line", "telemetry false"):  # fmt: skip
        assert shown in console, console


# --- Rasa's training-data warnings that were ours --------------------------------------------
def test_the_packs_entity_annotations_are_consistent_synonyms():
    """Rasa turns every annotation with a value into a synonym of its text; one text, one value
    ("myanmar" was both the language my and the country MM)."""
    import warnings

    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from bot import locale_packs

    files = [str(f) for p in locale_packs.discover() for f in p.nlu_files]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TrainingData().merge(*[load_data(f) for f in files])
    inconsistent = [
        str(w.message) for w in caught if "inconsistent entity synonyms" in str(w.message)
    ]
    assert inconsistent == []


@pytest.mark.parametrize("name", ["myanmar", "Myanmar", "indonesia", "thai", "မြန်မာ", "ไทย"])
def test_a_name_that_is_a_country_and_a_language_is_read_as_the_question_asked(name):
    from rasa_sdk import Tracker

    from actions.language import country_after, language_after
    from bot import locale_packs
    from nlu.gazetteer import Gazetteer

    found = Gazetteer.from_packs(locale_packs.discover()).extract(name)
    assert {e["entity"] for e in found} == {"country", "language"}, found
    country = next(e["value"] for e in found if e["entity"] == "country")
    language = next(e["value"] for e in found if e["entity"] == "language")

    def after(awaiting, intent):
        message = {"text": name, "intent": {"name": intent}, "entities": found,
                   "language": None, "language_confidence": 0.0}  # fmt: skip
        t = Tracker("w", {"awaiting": awaiting}, message, [], False, None, {}, "action_listen")
        return language_after(t, "en"), country_after(t, "KW")

    assert after("language", "choose_language") == (language, "KW")  # not a destination
    assert after("country", "choose_language")[0] == "en"  # a country answer keeps the language
    if country not in ("MM", "ID"):  # where workers come from is never the destination
        assert after("country", "help")[1] == country


# --- Everything a run logs ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_whole_run_logs_no_number_chat_text_or_secret(tmp_path, model):
    """Real Twilio and Telegram messages (fake providers on loopback) and an action that fails
    on a message the queue handed over; then the server's log (Rasa, the channels' queue and
    the action server) is read: no phone number, chat id, message text or configured secret."""
    import json
    import sqlite3
    import time
    import urllib.request

    from cryptography.fernet import Fernet

    from bot.store.repository import pseudonym
    from tests.fake_providers import FakeTelegram, FakeTwilio, signed_twilio_post
    from tests.live_server import start

    said = ["zq" + secrets.token_hex(6) for _ in range(3)]
    phone, chat = (
        "+6017" + str(secrets.randbelow(10**7)).zfill(7),
        5550000000 + secrets.randbelow(10**6),
    )
    keys = {
        "HELPLINE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "HELPLINE_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "TELEGRAM_BOT_TOKEN": f"{secrets.randbelow(10**9)}:{secrets.token_urlsafe(30)}",
        "TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    }
    telegram, twilio = FakeTelegram(), FakeTwilio()
    sid, number, public = "AC" + "4" * 32, "+15550004444", "https://helpline.example.org"
    server, stop = start(tmp_path, {
        **keys, "TELEGRAM_API_BASE": telegram.url, "TWILIO_ACCOUNT_SID": sid,
        "TWILIO_SMS_NUMBER": number, "TWILIO_API_BASE": twilio.url, "HELPLINE_PUBLIC_URL": public,
        "HELPLINE_CHANNEL_RETRY_SECONDS": "0.5", "HELPLINE_CHANNEL_MAX_ATTEMPTS": "2",
    })  # fmt: skip
    try:

        def sms(text: str) -> None:
            form = {"AccountSid": sid, "MessageSid": f"SM{secrets.token_hex(16)}", "To": number,
                    "From": phone, "Body": text, "NumMedia": "0"}  # fmt: skip
            status = signed_twilio_post(
                server.base, form, auth_token=keys["TWILIO_AUTH_TOKEN"], public_url=public
            )
            assert status == 200

        sms(f"my boss keeps my passport {said[0]} call {phone}")
        twilio.wait_for("Messages.json", 1)
        update = {"update_id": secrets.randbelow(10**6), "message": {
            "message_id": 1, "date": 1700000000, "text": f"hello {said[1]}",
            "chat": {"id": chat, "type": "private"},
            "from": {"id": chat, "is_bot": False, "first_name": "W"}}}  # fmt: skip
        request = urllib.request.Request(
            f"{server.base}/webhooks/telegram/webhook", data=json.dumps(update).encode(),
            headers={"Content-Type": "application/json",
                     "X-Telegram-Bot-Api-Secret-Token": keys["TELEGRAM_WEBHOOK_SECRET"]},
        )  # fmt: skip
        assert urllib.request.urlopen(request, timeout=60).status == 200
        telegram.wait_for("sendMessage", 1)
        # The SMS worker's conversation gets a slot no action can read (through Rasa's API,
        # on loopback in development): their next message's action fails.
        sender = pseudonym(keys["HELPLINE_PSEUDONYM_KEY"], "sms", phone)
        broken = {"event": "slot", "name": "case_ref", "value": {"note": said[2]}}
        urllib.request.urlopen(urllib.request.Request(
            f"{server.base}/conversations/{sender}/tracker/events", method="POST",
            data=json.dumps(broken).encode(), headers={"Content-Type": "application/json"},
        ), timeout=60).read()  # fmt: skip
        sms(f"hello again {said[2]}")
        deadline, state = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            with sqlite3.connect(tmp_path / "cases.db") as db:
                state = db.execute(
                    "SELECT status, error FROM messages WHERE direction = 'in' AND channel = 'sms'"
                    " ORDER BY id DESC LIMIT 1"
                ).fetchone()
            if state == ("caseworker", "action_failed"):
                break
            time.sleep(0.5)
        # Retried, then left for a person: the message was not lost, nor answered as done.
        assert state == ("caseworker", "action_failed")
    finally:
        stop()
        telegram.close()
        twilio.close()
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"action \w+ failed \(\w+\)", log)  # what failed, without details
    for clear in [*said, phone, phone[1:], str(chat), *keys.values()]:
        assert clear not in log, clear
