"""Keys: ``helpline rekey`` on real SQLite and PostgreSQL (after it, the newest key alone reads
the case store and the tracker store), and the minimum strength of the other secrets."""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3

import pytest
import yaml
from cryptography.fernet import Fernet, InvalidToken
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import event, select, update
from sqlalchemy.engine import make_url

from bot import tracker_store as ts
from bot.store import Database, accounts
from bot.store import repository as repo
from bot.store.cases import Actor
from bot.store.crypto import (
    FieldCipher,
    check_pseudonym_key,
    check_webhook_secret,
    generate_key,
    generate_token,
)
from bot.store.models import Attachment, Case, EncryptedBytes, RevealRequest, User
from bot.store.rekey import RekeyError, encrypted_columns, register, rekey_store, still_old
from tests.conftest import ROOT
from tests.store_backends import postgres_database

OLD, NEW = generate_key(), generate_key()
SEARCH_KEY = "search-key-of-this-test"
OPERATOR = Actor.operator("test")
DOMAIN = Domain.load(ROOT / "domain.yml")


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request, tmp_path):
    """A case store's URL and a tracker store's, on one backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}", f"sqlite:///{tmp_path / 'tracker.db'}"
        return
    (cases, drop_cases), (tracker, drop_tracker) = postgres_database(), postgres_database()
    yield cases, tracker
    drop_cases()
    drop_tracker()


def database(url: str, *keys: str) -> Database:
    return Database(url, list(keys), SEARCH_KEY)


def fill(url: str, messages: int = 5) -> None:
    """A store written under the old key: a case with its intake, a transcript with an
    attachment, a note, a reveal request, a user with two-factor; then a value in every
    encrypted column still empty (found as ``rekey`` finds them)."""
    db = database(url, OLD)
    db.upgrade()
    with db.session() as s:
        contact = repo.upsert_contact(s, pseudonym="p" * 64, channel="sms", address="+60123456789")
        case, _ = repo.create_case(s, contact=contact, category="wages", who="agent in Dhaka")
        for n in range(messages):
            message = repo.add_message(s, contact=contact, direction="in", text=f"m{n}", case=case)
        message.attachments.append(
            Attachment(content_type="image/jpeg", size=3, sha256="0" * 64, data=b"\xff\xd8\xff")
        )
        repo.add_note(s, case=case, note="called the embassy", actor="ana@example.org")
        s.add(RevealRequest(case_id=case.id, organisation="NGO", requested_by="b@example.org",
                            reason="court hearing"))  # fmt: skip
        accounts.add_organisation(s, "Helpline", actor=OPERATOR)
        accounts.add_user(
            s, "ana@example.org", organisation_name="Helpline", role="admin",
            password="a long enough password 1", actor=OPERATOR, two_factor=True,
        )  # fmt: skip
    with db.engine.begin() as connection:
        for table, columns in encrypted_columns().items():
            assert connection.execute(select(table)).first(), f"add a row of {table.name} here"
            for column in columns:
                value = b"bytes" if isinstance(column.type, EncryptedBytes) else "text"
                connection.execute(update(table).where(column.is_(None)).values({column: value}))
    db.dispose()


def everything(db: Database) -> dict:
    """Every encrypted value of the store, decrypted with this database's keys."""
    found = {}
    with db.engine.connect() as connection:
        for table, columns in encrypted_columns().items():
            keys = list(table.primary_key.columns)
            for row in connection.execute(select(*keys, *columns)):
                found[(table.name, tuple(row[: len(keys)]))] = tuple(row[len(keys) :])
    return found


def test_every_encrypted_column_is_found_by_looking_at_the_models():
    found = {f"{t.name}.{c.name}" for t, columns in encrypted_columns().items() for c in columns}
    assert {"contacts.address", "cases.what_happened", "cases.safe_contact", "messages.text",
            "attachments.data", "case_events.note", "users.totp_secret",
            "reveal_requests.reason"} <= found  # fmt: skip
    assert not {"cases.reference", "messages.status"} & found


def test_rekey_command_moves_everything_to_the_newest_key(urls, tmp_path, monkeypatch, capsys):
    cases_url, tracker_url = urls
    fill(cases_url)
    before = everything(database(cases_url, OLD))
    with database(cases_url, OLD).session() as s:
        totp_secret = s.execute(select(User.totp_secret)).scalar_one()
    said = "marker-" + generate_token()
    tracker = ts.HelplineTrackerStore(DOMAIN, host=tracker_url, cipher=FieldCipher([OLD]))
    asyncio.run(tracker.save(_conversation(said)))
    tracker.engine.dispose()

    monkeypatch.chdir(tmp_path)  # a relative SQLite path is relative to here, as for `rasa run`
    monkeypatch.setenv("HELPLINE_ENV", "development")
    monkeypatch.setenv("HELPLINE_DATABASE_URL", cases_url)
    monkeypatch.setenv("HELPLINE_ENCRYPTION_KEY", f"{NEW},{OLD}")
    assert _rekey(_endpoints(tmp_path, tracker_url)) == 0

    out = capsys.readouterr().out.splitlines()
    assert "contacts: 1 values re-encrypted" in out
    assert "messages: 5 values re-encrypted" in out
    assert "users: 1 values re-encrypted" in out
    assert "cases: 8 values re-encrypted" in out  # every intake field
    assert "tracker store: 5 events re-encrypted" in out  # every event of the conversation
    newest_only = database(cases_url, NEW)
    assert everything(newest_only) == before
    with newest_only.session() as s:
        assert s.execute(select(User.totp_secret)).scalar_one() == totp_secret
    newest_only.dispose()
    tracker = ts.HelplineTrackerStore(DOMAIN, host=tracker_url, cipher=FieldCipher([NEW]))
    assert asyncio.run(tracker.retrieve("w" * 64)).latest_message.text == said
    tracker.engine.dispose()
    with pytest.raises(InvalidToken):  # the old key alone reads nothing any more
        everything(database(cases_url, OLD))

    assert _rekey(_endpoints(tmp_path, tracker_url)) == 0  # again: nothing left to do
    assert "messages: 0 values re-encrypted" in capsys.readouterr().out.splitlines()


def test_rekey_reads_in_batches(tmp_path):
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    fill(url, messages=5)
    db = database(url, NEW, OLD)
    selects = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: selects.append(sql))
    counts = rekey_store(db.engine, db.engine.dialect.helpline_cipher, size=2)
    assert counts["messages"] == 5
    selects = [sql for sql in selects if sql.startswith("SELECT")]
    assert all("LIMIT" in sql for sql in selects)
    assert sum("FROM messages" in sql for sql in selects) == 4  # 2 + 2 + 1, then none left
    db.dispose()


def test_a_value_written_meanwhile_is_not_overwritten(urls):
    """The helpline keeps running during a rekey: a caseworker's edit between the read and the
    write of a batch stays."""
    cases_url, _ = urls
    fill(cases_url)
    db, running = database(cases_url, NEW, OLD), database(cases_url, NEW, OLD)

    def edit_first(_conn, _cursor, sql, *_):
        if sql.startswith("UPDATE cases") and not edited:
            edited.append(True)
            with running.session() as s:
                s.execute(select(Case)).scalar_one().who = "changed meanwhile"

    edited: list[bool] = []
    event.listen(db.engine, "before_cursor_execute", edit_first)
    rekey_store(db.engine, db.engine.dialect.helpline_cipher)
    assert edited
    newest_only = database(cases_url, NEW)
    with newest_only.session() as s:
        assert s.execute(select(Case)).scalar_one().who == "changed meanwhile"
    cipher = FieldCipher([NEW])
    assert (
        sum(still_old(newest_only.engine, t, c, cipher) for t, c in encrypted_columns().items())
        == 0
    )
    for each in (db, running, newest_only):
        each.dispose()


def test_a_value_no_key_reads_stops_the_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    fill(url)
    before = everything(database(url, OLD))
    db = database(url, generate_key(), NEW)  # neither is the key it was written with
    with pytest.raises(RekeyError, match=r"contacts\.address \(id=1\) cannot be read"):
        rekey_store(db.engine, db.engine.dialect.helpline_cipher)
    db.dispose()
    assert everything(database(url, OLD)) == before  # nothing was changed


def test_no_old_ciphertext_is_left_in_the_sqlite_files(tmp_path):
    """After a rekey the old key decrypts nothing found in the database file or its WAL."""
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    fill(url)
    running = sqlite3.connect(tmp_path / "cases.db")  # the helpline keeps its file open
    running.execute("SELECT count(*) FROM cases").fetchall()
    db = database(url, NEW, OLD)
    rekey_store(db.engine, db.engine.dialect.helpline_cipher)
    db.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("cases.db*"))
    running.close()
    tokens = re.findall(rb"gAAAAA[A-Za-z0-9_=-]{60,}", raw)
    assert tokens
    readable = 0
    for token in tokens:
        try:
            Fernet(OLD).decrypt(token)
            readable += 1
        except InvalidToken:
            pass
    assert readable == 0


# --- strength of the other secrets --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "0 characters long"),
        ("x7Qz9fK2mP4wL8nR5tY1vB3cD6", "26 characters long"),
        ("changeme-changeme-changeme-changeme", "placeholder"),
        ("MY-SECRET-PSEUDONYM-KEY-FOR-THE-HELPLINE", "placeholder"),
        ("a" * 40, "fewer than 8 different characters"),
        ("0123456789abcdef0123456789abcdef", "repeated"),
        ("x7Qz" + "0" * 10 + "9fK2mP4wL8nR5tY1vB3cD6", "long run"),
        ("x7Qzabcdefghijk9fK2mP4wL8nR5tY1vB3cD6", "long run"),
    ],
)
def test_weak_pseudonym_keys_are_refused_with_how_to_make_one(value, why):
    with pytest.raises(ValueError, match=why) as refused:
        check_pseudonym_key(value)
    assert "helpline keygen" in str(refused.value)
    assert value not in str(refused.value) or not value  # the message never quotes the key


@pytest.mark.parametrize(
    "make", [generate_key, generate_token, lambda: Fernet.generate_key().hex()]
)
def test_generated_keys_are_strong_enough(make):
    for _ in range(200):
        check_pseudonym_key(make())


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (generate_key(), "A-Z a-z 0-9 _ -"),  # a Fernet key ends with "=": Telegram refuses it
        ("x" * 257, "A-Z a-z 0-9 _ -"),
        ("short_but_valid", "15 characters long"),
        ("telegram-webhook-secret-for-our-helpline", "placeholder"),
        ("ab" * 20, "fewer than 8 different characters"),
    ],
)
def test_weak_or_invalid_telegram_webhook_secrets_are_refused(value, why):
    with pytest.raises(ValueError, match=why) as refused:
        check_webhook_secret(value)
    assert "helpline keygen --token" in str(refused.value)


def test_a_generated_token_is_a_valid_telegram_secret():
    for _ in range(200):
        token = generate_token()
        check_webhook_secret(token)
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", token)


# --- helpers --------------------------------------------------------------------------------


def _rekey(endpoints) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rekey", "--endpoints", str(endpoints)])
    return args.func(args)


def _endpoints(folder, tracker_url: str):
    """endpoints.yml as an operator writes it: dialect, host, port, db (a relative SQLite
    path), not a URL."""
    url = make_url(tracker_url)
    store = {"type": "bot.tracker_store.HelplineTrackerStore", "dialect": url.get_backend_name()}
    if url.get_backend_name() == "sqlite":
        store["db"] = str(url.database).rsplit("/", 1)[-1]
    else:
        store.update(url=url.host, port=url.port, db=url.database, username=url.username)
    path = folder / "endpoints.yml"
    path.write_text(yaml.safe_dump({"tracker_store": store}), encoding="utf-8")
    return path


def _conversation(said: str) -> DialogueStateTracker:
    events = [ActionExecuted("action_session_start"), SessionStarted(),
              UserUttered(said, {"name": "wages", "confidence": 0.9}), BotUttered(f"re: {said}"),
              ActionExecuted("action_listen")]  # fmt: skip
    return DialogueStateTracker.from_events("w" * 64, events, slots=DOMAIN.slots)
