"""Connecting to the case store and bringing its schema up to date."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.store.crypto import FieldCipher

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Database:
    """An engine with its cipher, a session factory, and the migrations."""

    def __init__(
        self,
        url: str,
        encryption_keys: tuple[str, ...] | list[str],
        search_key: str | None = None,
    ) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
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
        """Apply the migrations (``helpline db upgrade``; idempotent)."""
        from alembic import command

        command.upgrade(self.alembic_config(), revision)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # the action server and the CLI may share the file
    cursor.close()


def open_database(settings=None, *, upgrade: bool = True) -> Database:
    """The store named by the settings, migrated to the latest schema."""
    if settings is None:
        from bot import settings as settings_module

        settings = settings_module.load()
    db = Database(settings.database_url, settings.encryption_keys, settings.pseudonym_key)
    if upgrade:
        db.upgrade()
    return db
