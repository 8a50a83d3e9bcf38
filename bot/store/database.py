"""Connecting to the case store and bringing its schema up to date."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.store.crypto import FieldCipher

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x68656C70  # "help": PostgreSQL advisory lock held while migrating


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
        if url.startswith("sqlite") and ":memory:" not in url and url.rstrip("/") != "sqlite:":
            # SQLAlchemy 1.4 opens a new SQLite connection for every session of a file database
            # (NullPool), and each runs our pragmas: a fifth of the queue's time under load
            # (tests/bench/profile_turns.py). A pool keeps them; the queue's database work runs
            # on worker threads, hence check_same_thread off (one thread uses a connection at a
            # time, as the pool guarantees).
            from sqlalchemy.pool import QueuePool

            options = {"poolclass": QueuePool, "connect_args": {"check_same_thread": False}}
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True, **options)
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
        """A session that commits when the block ends and rolls back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

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
