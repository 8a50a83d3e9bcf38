"""Rasa's tracker store (bot/tracker_store.py) on real SQLite and PostgreSQL: events encrypted at
rest, no words in Rasa's other columns, rows from before encryption still read, erasure of a
whole conversation, key rotation, retention of silent conversations, SQLite secure_delete."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import sqlite3

import pytest
from cryptography.fernet import InvalidToken
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import create_engine, event, text

from bot import tracker_store as ts
from bot.store import Database
from bot.store.crypto import FieldCipher, generate_key
from bot.store.database import _sqlite_pragmas
from tests.conftest import ROOT
from tests.store_backends import postgres_database

DOMAIN = Domain.load(ROOT / "domain.yml")
OLD, NEW = generate_key(), generate_key()
NOW = dt.datetime.now(dt.timezone.utc).timestamp()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracker.db'}"
        return
    url, drop = postgres_database()
    yield url
    drop()


def store(url: str, *keys: str) -> ts.HelplineTrackerStore:
    # Rasa builds the URL from endpoints.yml; a whole URL in ``host`` is taken as it is.
    return ts.HelplineTrackerStore(DOMAIN, host=url, cipher=FieldCipher(keys or (OLD,)))


def run(coroutine):
    return asyncio.run(coroutine)


def conversation(
    sender: str,
    said: str,
    answer: str,
    at: float = NOW,
    earlier: DialogueStateTracker | None = None,
) -> DialogueStateTracker:
    """A session as Rasa stores it: the worker's words, an intake answer, a reply (after the
    ``earlier`` sessions)."""
    parse = {"text": said, "intent": {"name": "wages", "confidence": 0.9}, "entities": []}
    events = [
        ActionExecuted("action_session_start", timestamp=at),
        SessionStarted(timestamp=at),
        SlotSet("language", "ne", timestamp=at),
        ActionExecuted("action_listen", timestamp=at),
        UserUttered(said, parse["intent"], [], parse_data=parse, timestamp=at + 1),
        SlotSet("intake_what", answer, timestamp=at + 2),
        ActionExecuted("action_route", timestamp=at + 2),
        BotUttered(f"Your secret code is 4711 ({said})", timestamp=at + 3),
        ActionExecuted("action_listen", timestamp=at + 3),
    ]
    before = list(earlier.events) if earlier else []
    return DialogueStateTracker.from_events(sender, before + events, slots=DOMAIN.slots)


def rows(url: str) -> list[dict]:
    engine = create_engine(url, future=True)
    with engine.connect() as connection:
        found = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM events"))]
    engine.dispose()
    return found


def markers() -> tuple[str, str]:
    return "zq" + secrets.token_hex(6), "zq" + secrets.token_hex(6)


def test_no_words_answers_or_replies_in_clear_and_all_read_back(url):
    said, answer = markers()
    tracker = conversation("a" * 64, said, answer)
    run(store(url).save(tracker))
    stored = rows(url)
    assert len(stored) == len(tracker.events)
    for row in stored:
        assert said not in repr(row) and answer not in repr(row) and "4711" not in row["data"]
        assert row["data"].startswith("gAAAAA")  # a Fernet token
    assert [r["intent_name"] for r in stored if r["type_name"] == "user"] == ["wages"]
    assert {r["action_name"] for r in stored} == {
        "action_session_start", "action_listen", "action_route", "language", "intake_what", None,
    }  # fmt: skip

    back = run(store(url).retrieve_full_tracker("a" * 64))
    assert [e.as_dict() for e in back.events] == [e.as_dict() for e in tracker.events]
    assert back.latest_message.text == said and back.get_slot("intake_what") == answer


def test_saves_and_reads_what_rasas_own_store_does_session_by_session(url, tmp_path):
    """Our Core statements (one INSERT of many rows, the latest session's count and rows) against
    Rasa's ORM queries: three sessions saved turn by turn (the tracker holds the previous
    session and the new one when a session starts, as Rasa's does), every event stored once,
    the same latest session and the same whole conversation read back, the same rows."""
    stock_url = f"sqlite:///{tmp_path / 'stock.db'}"
    stock = SQLTrackerStore(DOMAIN, host=stock_url)
    ours = store(url)
    previous = None
    for session_number in range(3):
        at = NOW + 100 * session_number
        full = conversation("b" * 64, f"turn {session_number}", "x", at=at, earlier=previous)
        start = len(previous.events) if previous else 0
        # The turn that starts the session (the tracker still holds the previous one), then
        # the rest of it (the tracker read back holds only the latest session).
        for begin, end in ((0, start + 5), (start, len(full.events))):
            partial = DialogueStateTracker.from_events(
                "b" * 64, list(full.events)[begin:end], slots=DOMAIN.slots
            )
            run(stock.save(partial))
            run(ours.save(partial))
        run(ours.save(partial))  # saved again with nothing new: nothing stored twice
        previous = conversation("b" * 64, f"turn {session_number}", "x", at=at)
    assert len(rows(url)) == len(rows(stock_url)) == 27
    assert [r["type_name"] for r in rows(url)] == [r["type_name"] for r in rows(stock_url)]
    for read in ("retrieve", "retrieve_full_tracker"):
        theirs = run(getattr(stock, read)("b" * 64))
        back = run(getattr(ours, read)("b" * 64))
        assert [e.as_dict() for e in back.events] == [e.as_dict() for e in theirs.events]
    latest = run(ours.retrieve("b" * 64))
    assert latest.latest_message.text == "turn 2" and len(latest.events) == 9


def test_a_message_parsed_as_an_intent_leaves_no_words_in_the_name_columns(url):
    """``/zq...`` parses as an intent named by the worker's words: that name is not kept, nor
    an action or slot name the domain does not have."""
    said, _ = markers()
    words = {"name": said, "confidence": 1.0}
    events = [
        ActionExecuted("action_listen"),
        UserUttered(f"/{said}", words, [], parse_data={"text": f"/{said}", "intent": words}),
        ActionExecuted(said),
        SlotSet(said, "x"),
    ]
    run(store(url).save(DialogueStateTracker.from_events("b" * 64, events, slots=DOMAIN.slots)))
    stored = rows(url)
    assert {(r["intent_name"], r["action_name"]) for r in stored} == {
        (None, "action_listen"), (None, None),
    }  # fmt: skip
    assert not [r for r in stored if said in repr(r)]


def test_rows_from_before_encryption_are_read_then_encrypted_by_reencrypt(url):
    said, answer = markers()
    legacy = SQLTrackerStore(DOMAIN, host=url)  # Rasa's own store: plain JSON
    run(legacy.save(conversation("c" * 64, said, answer)))
    legacy.engine.dispose()
    assert any(said in r["data"] for r in rows(url))

    ours = store(url)
    back = run(ours.retrieve("c" * 64))
    assert back.latest_message.text == said and back.get_slot("intake_what") == answer
    run(ours.save(back.copy()))  # nothing new: nothing written
    assert ts.reencrypt(ours, [OLD]) == len(rows(url)) == 9
    assert not [r for r in rows(url) if said in r["data"] or answer in r["data"]]
    assert run(ours.retrieve("c" * 64)).get_slot("intake_what") == answer


def test_reencrypt_moves_every_event_to_the_newest_key(url):
    said, answer = markers()
    run(store(url, OLD).save(conversation("d" * 64, said, answer)))
    assert ts.reencrypt(url, [NEW, OLD]) == 9
    assert run(store(url, NEW).retrieve("d" * 64)).get_slot("intake_what") == answer
    with pytest.raises(InvalidToken):  # the old key alone no longer reads anything
        run(store(url, OLD).retrieve("d" * 64))
    assert ts.reencrypt(create_engine(url, future=True), [NEW]) == 9  # an engine works too


def test_erasure_deletes_every_stored_event_and_keeps_only_the_language(url):
    said, answer = markers()
    sender = "e" * 64
    ours = store(url)
    first = conversation(sender, said, answer, at=NOW - 7200)
    run(ours.save(first))  # an earlier session
    run(ours.save(conversation(sender, "second session", answer, earlier=first)))
    old = {r["data"] for r in rows(url)}
    assert len(old) == 18

    tracker = run(ours.retrieve(sender))
    tracker.update(SlotSet(ts.ERASED_SLOT, True))
    tracker.update(ActionExecuted("action_listen"))
    run(ours.save(tracker))

    stored = rows(url)
    assert not old & {r["data"] for r in stored}
    assert [r["type_name"] for r in stored] == ["action", "session_started", "slot", "action"]
    full = run(ours.retrieve_full_tracker(sender))
    assert full.get_slot("language") == "ne" and full.get_slot(ts.ERASED_SLOT) is None
    assert not [e for e in full.events if isinstance(e, (UserUttered, BotUttered))]
    assert said not in json.dumps([e.as_dict() for e in full.events])


def test_delete_silent_deletes_the_conversations_silent_since_the_cutoff(url):
    ours = store(url)
    run(ours.save(conversation("f" * 64, *markers(), at=NOW - 40 * 86400)))
    earlier = conversation("g" * 64, *markers(), at=NOW - 40 * 86400)
    run(ours.save(earlier))
    run(ours.save(conversation("g" * 64, *markers(), at=NOW - 3600, earlier=earlier)))
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    assert ts.delete_silent(url, cutoff, dry_run=True) == 1
    assert len(rows(url)) == 27
    naive = cutoff.replace(tzinfo=None)  # UTC
    assert ts.delete_silent(ours.engine, naive) == 1
    assert {r["sender_id"] for r in rows(url)} == {"g" * 64}
    assert len(rows(url)) == 18  # both sessions of the other conversation stay
    assert ts.delete_silent(url, cutoff) == 0


def test_erase_conversations_deletes_only_those(url):
    ours = store(url)
    for sender in ("h" * 64, "i" * 64, "j" * 64):
        run(ours.save(conversation(sender, *markers())))
    assert ts.erase_conversations(url, ["h" * 64, "j" * 64]) == 18
    assert {r["sender_id"] for r in rows(url)} == {"i" * 64}
    assert ts.erase_conversations(url, []) == 0


def test_no_tracker_store_yet_is_nothing_to_do(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert ts.reencrypt(url, [NEW]) == 0
    assert ts.delete_silent(url, dt.datetime.now(dt.timezone.utc)) == 0
    assert ts.erase_conversations(url, ["x"]) == 0


def _pragma(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("PRAGMA secure_delete")).scalar_one()


def test_sqlite_secure_delete_is_on_in_both_stores(tmp_path):
    ours = store(f"sqlite:///{tmp_path / 'tracker.db'}")
    cases = Database(f"sqlite:///{tmp_path / 'cases.db'}", [OLD])
    assert _pragma(ours.engine) == 1 and _pragma(cases.engine) == 1
    # This machine's SQLite is built with secure_delete on by default (Debian's is; python.org's
    # is not): each pragma function must turn it on where it is off, and be on the engine.
    for turn_on in (_sqlite_pragmas, ts.secure_delete):
        raw = sqlite3.connect(tmp_path / "raw.db")
        raw.execute("PRAGMA secure_delete=OFF")
        turn_on(raw, None)
        assert raw.execute("PRAGMA secure_delete").fetchone() == (1,)
        raw.close()
    assert event.contains(ours.engine, "connect", ts.secure_delete)
    cases.dispose()


def test_an_erased_conversation_is_overwritten_in_the_file(tmp_path):
    """Written in clear by Rasa's own store (an old deployment), then erased: with
    secure_delete the words are not left in the file's free space."""
    path = tmp_path / "tracker.db"
    said, answer = markers()
    legacy = SQLTrackerStore(DOMAIN, db=str(path))
    run(legacy.save(conversation("k" * 64, said, answer)))
    legacy.engine.dispose()
    assert said.encode() in path.read_bytes()

    ours = ts.HelplineTrackerStore(DOMAIN, db=str(path), cipher=FieldCipher([OLD]))
    tracker = run(ours.retrieve("k" * 64))
    tracker.update(SlotSet(ts.ERASED_SLOT, True))
    run(ours.save(tracker))
    ours.engine.dispose()
    content = path.read_bytes()
    assert said.encode() not in content and answer.encode() not in content
