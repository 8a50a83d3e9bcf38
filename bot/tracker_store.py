"""Rasa's SQL tracker store, encrypted, with erasure, retention and key rotation.

Rasa keeps every event of a conversation as a JSON row: the worker's words, every slot (the
intake answers) and every reply (one of them says the case's secret code). Here each event's
JSON is encrypted with the case store's keys (``HELPLINE_ENCRYPTION_KEY``, MultiFernet: the
first key encrypts, every key decrypts), so the tracker store holds no conversation in clear.
Rasa's other columns say who and when, never what: ``sender_id`` is our pseudonym (an HMAC of
channel and address), ``type_name`` the kind of event, ``timestamp`` its time, and
``intent_name``/``action_name`` a name of the domain's (anything else, such as a message's own
words parsed as an ``/intent``, is not kept there). A row written before encryption (plain JSON)
is still read, and ``reencrypt`` encrypts it: upgrading loses nothing.

When a worker confirms that their data must be deleted, the action sets the slot ``erased``.
On that save this store deletes every stored event of the conversation, of every session, and
keeps only a fresh start with the conversation's language, so Rasa's copy of the transcript goes
too, not only the case store's. On SQLite, ``secure_delete`` overwrites what is deleted.
Configured in ``endpoints.yml``:

    tracker_store:
      type: bot.tracker_store.HelplineTrackerStore
      dialect: sqlite
      db: helpline-tracker.db
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import threading
from collections.abc import Iterable, Iterator

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, Event, SessionStarted, SlotSet
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy import (
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine

from bot.store.crypto import FieldCipher

logger = logging.getLogger(__name__)

ERASED_SLOT = "erased"
EVENTS = SQLTrackerStore.SQLEvent.__table__
BATCH = 500  # rows re-encrypted per transaction

# Rasa's queries for one conversation's latest session (``SQLTrackerStore._event_query``: the
# events from its latest ``session_started`` on, or all when it has none), as Core statements
# built once: Rasa builds an ORM query and loads every row as an object on each turn, and its
# save adds each new event as an object (one INSERT each, about 8 a turn). Same rows, same
# order (by id), same count.
_SENDER = bindparam("sender_id")
_SESSION_START = (
    select(func.max(EVENTS.c.timestamp))
    .where(EVENTS.c.sender_id == _SENDER, EVENTS.c.type_name == SessionStarted.type_name)
    .scalar_subquery()
)
_IN_LATEST_SESSION = or_(EVENTS.c.timestamp >= _SESSION_START, _SESSION_START.is_(None))
LATEST_SESSION_DATA = (
    select(EVENTS.c.data).where(EVENTS.c.sender_id == _SENDER, _IN_LATEST_SESSION)
    .order_by(EVENTS.c.id)
)  # fmt: skip
ALL_SESSIONS_DATA = select(EVENTS.c.data).where(EVENTS.c.sender_id == _SENDER).order_by(
    EVENTS.c.id
)
LATEST_SESSION_COUNT = (
    select(func.count()).select_from(EVENTS)
    .where(EVENTS.c.sender_id == _SENDER, _IN_LATEST_SESSION)
)  # fmt: skip


def erasure_requested(tracker: DialogueStateTracker) -> bool:
    return any(isinstance(e, SlotSet) and e.key == ERASED_SLOT and e.value for e in tracker.events)


def secure_delete(dbapi_connection, _record) -> None:
    """SQLite overwrites deleted rows in the file (an erased conversation is not recoverable
    from free pages). The setting lasts a connection: set on each as it opens."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _seal(cipher: FieldCipher, data: dict) -> str:
    return cipher.encrypt(json.dumps(data))


def _plain(cipher: FieldCipher, stored: str) -> str:
    """An event's JSON. A row written before encryption is JSON already (a Fernet token never
    starts with ``{``)."""
    return stored if stored.lstrip().startswith("{") else cipher.decrypt(stored)


def _names(domain: Domain) -> tuple[set[str], set[str]]:
    """The intent names and the action, form and slot names an event may show in clear."""
    actions = set(domain.action_names_or_texts) - set(domain.action_texts)
    return set(domain.intents), actions | set(domain.form_names) | {s.name for s in domain.slots}


class HelplineTrackerStore(SQLTrackerStore):
    def __init__(
        self, domain: Domain | None = None, *, cipher: FieldCipher | None = None, **kwargs
    ) -> None:
        """``cipher`` defaults to the case store's (``HELPLINE_ENCRYPTION_KEY``); the other
        arguments are Rasa's (``endpoints.yml``)."""
        super().__init__(domain, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # Rasa's SQLite engine opens a new connection for every transaction (two a turn,
            # each with its pragma): a pool keeps them, as the case store's does. The store's
            # work runs on worker threads (``save``, ``_retrieve``), one thread a connection
            # at a time, as the pool guarantees.
            from sqlalchemy.orm import sessionmaker
            from sqlalchemy.pool import QueuePool

            url = self.engine.url
            self.engine.dispose()
            self.engine = create_engine(
                url, poolclass=QueuePool, connect_args={"check_same_thread": False}
            )
            event.listen(self.engine, "connect", secure_delete)
            self.sessionmaker = sessionmaker(bind=self.engine)
            # One transaction at a time on the file, as when they ran on the event loop: SQLite
            # takes one writer, and threads that collide sleep in its busy handler.
            self._one_at_a_time = threading.Lock()
        else:
            self._one_at_a_time = contextlib.nullcontext()
        if cipher is None:
            from bot import settings

            cipher = FieldCipher(settings.load().encryption_keys)
        self.cipher = cipher

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Rasa's save, with each event encrypted; an erasure replaces the whole stored
        conversation with a fresh start in one transaction. The database work runs on a worker
        thread: the event loop goes on with other workers' turns and webhooks meanwhile."""
        erase = erasure_requested(tracker)
        if erase:
            tracker = self._fresh_start(tracker)
        await self.stream_events(tracker)
        deleted = await asyncio.to_thread(self._save, tracker, erase)
        if erase:
            logger.info("conversation erased: %d stored events deleted", deleted)

    def _save(self, tracker: DialogueStateTracker, erase: bool) -> int:
        """The new events (those after the stored ones of the latest session, as Rasa counts
        them) in one INSERT of many rows; how many events an erasure deleted."""
        with self._one_at_a_time, self.session_scope() as session:
            deleted = 0
            if erase:
                deleted = session.execute(
                    delete(EVENTS).where(EVENTS.c.sender_id == tracker.sender_id)
                ).rowcount
            stored = session.execute(
                LATEST_SESSION_COUNT, {"sender_id": tracker.sender_id}
            ).scalar_one()
            intents, actions = _names(self.domain)
            rows = [
                self._row(tracker.sender_id, new, intents, actions)
                for new in itertools.islice(tracker.events, stored, None)
            ]
            if rows:
                session.execute(insert(EVENTS), rows)
            session.commit()
        return deleted

    def _fresh_start(self, tracker: DialogueStateTracker) -> DialogueStateTracker:
        """What stays of an erased conversation: a new session in the worker's language."""
        language = tracker.get_slot("language")
        events = [ActionExecuted("action_session_start"), SessionStarted()]
        if language:
            events.append(SlotSet("language", language))
        events.append(ActionExecuted("action_listen"))
        return DialogueStateTracker.from_events(
            tracker.sender_id, events, slots=self.domain.slots if self.domain else None
        )

    def _row(self, sender_id: str, new: Event, intents: set[str], actions: set[str]) -> dict:
        data = new.as_dict()
        intent = ((data.get("parse_data") or {}).get("intent") or {}).get(INTENT_NAME_KEY)
        action = data.get("name")
        return {
            "sender_id": sender_id,
            "type_name": new.type_name,
            "timestamp": data.get("timestamp"),
            "intent_name": intent if intent in intents else None,
            "action_name": action if action in actions else None,
            "data": _seal(self.cipher, data),
        }

    async def _retrieve(
        self, sender_id: str, fetch_events_from_all_sessions: bool
    ) -> DialogueStateTracker | None:
        events = await asyncio.to_thread(self._events, sender_id, fetch_events_from_all_sessions)
        if not (self.domain and events):
            return None
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)

    def _events(self, sender_id: str, all_sessions: bool) -> list[dict]:
        """The stored events of the latest session (or of all), decrypted, in order."""
        query = ALL_SESSIONS_DATA if all_sessions else LATEST_SESSION_DATA
        with self._one_at_a_time, self.session_scope() as session:
            stored = session.execute(query, {"sender_id": sender_id}).scalars().all()
        return [json.loads(_plain(self.cipher, data)) for data in stored]


Target = SQLTrackerStore | Engine | str  # a tracker store, its engine, or its database URL


@contextlib.contextmanager
def _events_engine(target: Target) -> Iterator[Engine | None]:
    """The tracker store's engine (made from a URL here, and disposed of after), or None while
    it has no events table (no conversation was ever stored)."""
    if isinstance(target, (SQLTrackerStore, Engine)):
        engine, made_here = getattr(target, "engine", target), False
    else:
        engine, made_here = create_engine(target, future=True), True
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", secure_delete)
    try:
        yield engine if inspect(engine).has_table(EVENTS.name) else None
    finally:
        if made_here:
            engine.dispose()


def reencrypt(store_or_engine: Target, keys: Iterable[str]) -> int:
    """Encrypts every stored event again under the newest key (the first of ``keys``; every
    key decrypts), rows written before encryption included, so that an old key can be retired
    (``helpline rekey``). Returns how many events were rewritten."""
    cipher = FieldCipher(list(keys))
    rewrite = (
        update(EVENTS).where(EVENTS.c.id == bindparam("row_id")).values(data=bindparam("sealed"))
    )
    rewritten, last = 0, -1
    with _events_engine(store_or_engine) as engine:
        while engine is not None:
            with engine.begin() as connection:
                rows = connection.execute(
                    select(EVENTS.c.id, EVENTS.c.data)
                    .where(EVENTS.c.id > last, EVENTS.c.data.is_not(None))
                    .order_by(EVENTS.c.id)
                    .limit(BATCH)
                ).all()
                if not rows:
                    break
                sealed = [
                    {"row_id": row_id, "sealed": cipher.encrypt(_plain(cipher, data))}
                    for row_id, data in rows
                ]
                connection.execute(rewrite, sealed)
            rewritten, last = rewritten + len(rows), rows[-1].id
    return rewritten


def delete_silent(engine_or_url: Target, older_than: dt.datetime, *, dry_run=False) -> int:
    """Deletes every event of each conversation whose latest event is older than
    ``older_than`` (a naive time is UTC): the retention of conversations gone silent. Returns
    how many conversations; with ``dry_run`` only counts them."""
    if older_than.tzinfo is None:
        older_than = older_than.replace(tzinfo=dt.timezone.utc)
    silent = (
        select(EVENTS.c.sender_id)
        .group_by(EVENTS.c.sender_id)
        .having(func.max(EVENTS.c.timestamp) < older_than.timestamp())
    )
    with _events_engine(engine_or_url) as engine:
        if engine is None:
            return 0
        with engine.begin() as connection:
            count = connection.execute(
                select(func.count()).select_from(silent.subquery())
            ).scalar_one()
            if count and not dry_run:
                connection.execute(delete(EVENTS).where(EVENTS.c.sender_id.in_(silent)))
    return count


def erase_conversations(engine_or_url: Target, sender_ids: Iterable[str]) -> int:
    """Deletes every event of these conversations (a worker's other channels, when their
    erasure reaches them); returns how many events."""
    sender_ids = list(sender_ids)
    with _events_engine(engine_or_url) as engine:
        if engine is None or not sender_ids:
            return 0
        with engine.begin() as connection:
            return connection.execute(
                delete(EVENTS).where(EVENTS.c.sender_id.in_(sender_ids))
            ).rowcount
