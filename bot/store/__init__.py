"""The case store: contacts, cases, transcripts and their audit trail (SQLAlchemy).

SQLite by default, PostgreSQL by URL. Personal fields are encrypted at rest (``crypto``).
Tables in ``models``; reading and writing through the keyword-only functions of ``repository``;
schema changes through Alembic migrations (``migrations/``, ``helpline db upgrade``).
"""

from bot.store.database import Database, open_database

__all__ = ["Database", "open_database"]
