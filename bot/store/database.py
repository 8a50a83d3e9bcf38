"""Connecting to the case store and bringing its schema up to date."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.store.crypto import FieldCipher

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x68656C70  # "help": PostgreSQL advisory lock held while migrating
# How long a transaction on a SQLite file waits for the process's other transactions before it
# goes ahead anyway (SQLite's own locking then decides, as it always does between processes).
SQLITE_TURN_WAIT = 10.0

logger = logging.getLogger(__name__)
_sqlite_turns: dict[str, threading.RLock] = {}
_sqlite_turns_lock = threading.Lock()


def _sqlite_turn(path: str) -> threading.RLock:
    """One lock per SQLite file in this process: its transactions take turns (see
    ``Database.session``)."""
    key = str(Path(path).resolve())
    with _sqlite_turns_lock:
        return _sqlite_turns.setdefault(key, threading.RLock())


class Database:
    """An engine with its cipher, a session factory, and the migrations."""

    def __init__(
        self,
        url: str,
        encryption_keys: tuple[str, ...] | list[str],
        search_key: str | None = None,
    ) -> None:
        self.url = url
        options = {}
        self._turn: threading.RLock | None = None
        if url.startswith("sqlite") and ":memory:" not in url and url.rstrip("/") != "sqlite:":
            # SQLAlchemy 1.4 opens a new SQLite connection for every session of a file database
            # (NullPool), and each runs our pragmas: a fifth of the queue's time under load
            # (tests/bench/profile_turns.py). A pool keeps them; the queue's database work runs
            # on worker threads, hence check_same_thread off (one thread uses a connection at a
            # time, as the pool guarantees).
            from sqlalchemy.pool import QueuePool

            options = {"poolclass": QueuePool, "connect_args": {"check_same_thread": False}}
        self.engine: Engine = create_engine(
            url, future=True, pool_pre_ping=not options, **options
        )  # a SQLite file needs no ping: there is no server to lose the connection
        if options:
            self._turn = _sqlite_turn(self.engine.url.database)
        # The Encrypted column type finds the cipher on the dialect: one per engine.
        self.engine.dialect.helpline_cipher = FieldCipher(encryption_keys)
        # The keyed hash of the search index (repository.search_terms): the pseudonym key in a
        # deployment (open_database), else one derived from the oldest encryption key.
        self.engine.dialect.helpline_search_key = (
            search_key or hashlib.sha256(f"search:{encryption_keys[-1]}".encode()).hexdigest()
        ).encode()
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, future=True, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises.

        On a SQLite file the process's transactions take turns (one lock per file). SQLite takes
        one writer at a time; without the turns, the queue's threads ran into each other's write
        locks and SQLite's busy handler put them to sleep for milliseconds at a time: the queue
        alone answers 49.9 messages a second under 16 workers without them, 56.7 with them
        (tests/bench/queue_throughput.py, docs/benchmarks.md). A transaction that waits more
        than ``SQLITE_TURN_WAIT`` goes ahead anyway, with SQLite's own locking, as between
        processes. PostgreSQL needs no turns."""
        turn = self._turn
        taken = turn is not None and turn.acquire(timeout=SQLITE_TURN_WAIT)
        if turn is not None and not taken:
            logger.warning("case store: waited %.0f s for a turn on SQLite; going ahead",
                           SQLITE_TURN_WAIT)  # fmt: skip
        try:
            with self._sessions() as session, session.begin():
                yield session
        finally:
            if taken:
                turn.release()

    def alembic_config(self):
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["engine"] = self.engine
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations (``helpline db upgrade``; idempotent). On PostgreSQL an
        advisory lock serialises them: two processes starting at once never race; the second
        finds the schema current."""
        from alembic import command

        if self.engine.dialect.name != "postgresql":
            command.upgrade(self.alembic_config(), revision)
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                config = self.alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()

    def revisions(self) -> tuple[str | None, str]:
        """(the schema's revision, the code's latest)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision(), head

    def require_current(self) -> None:
        """Refuse to work on a schema other than the code's: only ``helpline db upgrade`` and
        ``helpline run`` (once, at start) migrate, so replicas never race."""
        current, head = self.revisions()
        if current != head:
            from bot.settings import SettingsError

            raise SettingsError(
                f"the case store's schema is at {current or 'nothing'}, this code needs {head}:"
                " run `helpline db upgrade` (or start `helpline run`, which upgrades once)"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # the action server and the CLI may share the file
    # Deleted rows (an erasure, a retention run) are overwritten in the file, not left in free
    # pages; per connection, like foreign_keys.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def open_database(settings=None, *, upgrade: bool = False) -> Database:
    """The store named by the settings: migrated to the latest schema with ``upgrade``, else
    checked to be current (``Database.require_current``)."""
    if settings is None:
        from bot import settings as settings_module

        settings = settings_module.load()
    db = Database(settings.database_url, settings.encryption_keys, settings.pseudonym_key)
    if upgrade:
        db.upgrade()
    else:
        db.require_current()
    return db
