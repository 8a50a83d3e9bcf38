"""``helpline rekey``: every encrypted value again under the newest key, so an old one can go.

``HELPLINE_ENCRYPTION_KEY`` lists keys newest first: the first encrypts, every one decrypts
(MultiFernet). To retire a key: put a new key (``helpline keygen``) in front, restart every
process with that list, run ``helpline rekey``, and once it reports nothing left under an old
key, remove the old one from the list.

What it re-encrypts: every ``Encrypted`` and ``EncryptedBytes`` column of every table of
``bot/store/models.py`` (found by looking at the models, so a new encrypted column is never
forgotten; the dashboard users' TOTP secrets are one), and the events of Rasa's tracker store
(``bot/tracker_store.py``'s ``reencrypt``, on the store ``endpoints.yml`` configures).

In batches of primary keys, one transaction each: a large store is never in memory at once and
an interrupted run just runs again (values already under the newest key are left as they are).
Each value is written back only if nobody changed it meanwhile, so a running helpline loses no
write. On SQLite (``secure_delete`` on, bot/store/database.py) a checkpoint of the write-ahead
log at the end leaves no copy under the old key in the file; on PostgreSQL the old row versions
stay on disk until ``VACUUM`` reclaims them (``VACUUM FULL`` rewrites the tables).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from cryptography.fernet import InvalidToken
from sqlalchemy import (
    Column,
    Table,
    bindparam,
    event,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine

from bot.store.crypto import FieldCipher
from bot.store.models import Base, Encrypted, EncryptedBytes

BATCH = 500  # rows per transaction
FILE_BATCH = 8  # rows per transaction of a table of files (attachments: up to 20 MB each)
ROOT = Path(__file__).resolve().parent.parent.parent


class RekeyError(RuntimeError):
    """A value no configured key can read: the run stops before writing it."""


def encrypted_columns(metadata=Base.metadata) -> dict[Table, list[Column]]:
    """Every table with encrypted columns, and those columns, by introspection of the models."""
    found: dict[Table, list[Column]] = {}
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, (Encrypted, EncryptedBytes))]
        if columns:
            found[table] = columns
    return found


def _stored(column: Column):
    """The column as stored (the ciphertext), without the decrypting type."""
    return type_coerce(column, column.type.impl)


def _batches(
    engine: Engine, table: Table, columns: list[Column], size: int
) -> Iterator[tuple[Connection, list]]:
    """Rows with an encrypted value, ``size`` at a time (fewer of files) in primary-key order,
    each batch in a transaction of its own (committed when the caller asks for the next)."""
    keys = list(table.primary_key.columns)
    if any(isinstance(c.type, EncryptedBytes) for c in columns):
        size = min(size, FILE_BATCH)
    query = (
        select(*keys, *(_stored(c) for c in columns))
        .where(or_(*(c.is_not(None) for c in columns)))
        .order_by(*keys)
        .limit(size)
    )
    last = None
    while True:
        with engine.begin() as connection:
            page = query if last is None else query.where(tuple_(*keys) > tuple_(*last))
            rows = connection.execute(page).all()
            if not rows:
                return
            yield connection, rows
        last = tuple(rows[-1][: len(keys)])


def _token(value) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


def rekey_table(
    engine: Engine, table: Table, columns: list[Column], cipher: FieldCipher, size: int = BATCH
) -> int:
    """Re-encrypts this table's values that are not under the newest key; returns how many.
    Each UPDATE names the old ciphertext, so a value changed meanwhile is left alone."""
    keys = list(table.primary_key.columns)
    where = [k == bindparam(f"rk_key{i}") for i, k in enumerate(keys)]
    statements = {
        c.name: update(table)
        .where(*where, _stored(c) == bindparam("rk_old"))
        .values({c.name: type_coerce(bindparam("rk_new"), c.type.impl)})
        for c in columns
    }
    rewritten = 0
    for connection, rows in _batches(engine, table, columns, size):
        for position, column in enumerate(columns, start=len(keys)):
            params = [
                _rotated(cipher, table, column, row, position)
                for row in rows
                if row[position] is not None and not cipher.is_current(_token(row[position]))
            ]
            if params:
                connection.execute(statements[column.name], params)
                rewritten += len(params)
    return rewritten


def _rotated(cipher: FieldCipher, table: Table, column: Column, row, position: int) -> dict:
    """The parameters of one value's UPDATE: its row's key, the old and the new ciphertext."""
    keys = {f"rk_key{i}": row[i] for i in range(len(table.primary_key.columns))}
    value = row[position]
    try:
        new = cipher.rotate(_token(value))
    except InvalidToken as exc:
        where = ", ".join(f"{k.name}={row[i]}" for i, k in enumerate(table.primary_key.columns))
        raise RekeyError(
            f"{table.name}.{column.name} ({where}) cannot be read with any key of"
            " HELPLINE_ENCRYPTION_KEY: the run stopped there (what came before is done); add"
            " the key it was written with and run again"
        ) from exc
    return {**keys, "rk_old": value, "rk_new": new if isinstance(value, bytes) else new.decode()}


def still_old(engine: Engine, table: Table, columns: list[Column], cipher, size=BATCH) -> int:
    """How many values of this table the newest key alone cannot read."""
    count = 0
    for _connection, rows in _batches(engine, table, columns, size):
        for row in rows:
            values = row[len(table.primary_key.columns) :]
            count += sum(v is not None and not cipher.is_current(_token(v)) for v in values)
    return count


def rekey_store(engine: Engine, cipher: FieldCipher, size: int = BATCH) -> dict[str, int]:
    """Re-encrypts the whole case store; returns the values rewritten per table."""
    counts = {
        table.name: rekey_table(engine, table, columns, cipher, size)
        for table, columns in encrypted_columns().items()
    }
    if engine.dialect.name == "sqlite":  # the old pages out of the write-ahead log
        with engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return counts


def tracker_store_engine(endpoints_file: Path | str) -> Engine | None:
    """The engine of the SQL tracker store ``endpoints.yml`` configures, built as Rasa builds
    it (a relative SQLite path is relative to the working folder, as for ``rasa run``); None
    when there is none or its SQLite file does not exist yet."""
    import sqlalchemy as sa
    from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
    from rasa.utils.endpoints import read_endpoint_config

    config = read_endpoint_config(str(endpoints_file), "tracker_store")
    if config is None or not _is_sql(config.type):
        return None
    options = dict(config.kwargs)
    dialect = options.get("dialect", "sqlite")
    db = options.get("db", "rasa.db")
    if dialect == "sqlite" and not config.url and not Path(db).exists():
        return None
    url = SQLTrackerStore.get_db_url(
        dialect, config.url, options.get("port"), db, options.get("username"),
        options.get("password"), query=options.get("query"),
    )  # fmt: skip
    engine = sa.create_engine(url, future=True, **create_engine_kwargs(url))
    if engine.dialect.name == "sqlite":
        from bot.tracker_store import secure_delete

        event.listen(engine, "connect", secure_delete)
    return engine


def _is_sql(kind: str | None) -> bool:
    """Rasa's ``sql`` or a class that extends its SQL tracker store (ours does)."""
    if (kind or "").lower() == "sql":
        return True
    if not kind or "." not in kind:
        return False
    import importlib

    from rasa.core.tracker_store import SQLTrackerStore

    module, name = kind.rsplit(".", 1)
    found = getattr(importlib.import_module(module), name, None)
    return isinstance(found, type) and issubclass(found, SQLTrackerStore)


def rekey_tracker_store(endpoints_file: Path | str, keys: tuple[str, ...]) -> int | None:
    """The tracker store's events under the newest key (``bot.tracker_store.reencrypt``);
    None when there is no SQL tracker store to re-encrypt."""
    from bot.tracker_store import reencrypt

    engine = tracker_store_engine(endpoints_file)
    if engine is None:
        return None
    try:
        return reencrypt(engine, keys)
    finally:
        engine.dispose()


def cmd_rekey(args: argparse.Namespace) -> int:
    from bot.settings import load
    from bot.store import open_database

    settings = load()
    db = open_database(settings)
    cipher = db.engine.dialect.helpline_cipher
    try:
        counts = rekey_store(db.engine, cipher, args.batch_size)
        left = sum(still_old(db.engine, t, c, cipher) for t, c in encrypted_columns().items())
    finally:
        db.dispose()
    for table, count in counts.items():
        print(f"{table}: {count} values re-encrypted")
    events = rekey_tracker_store(args.endpoints, settings.encryption_keys)
    if events is None:
        print("tracker store: none configured (or not created yet), nothing to re-encrypt")
    else:
        print(f"tracker store: {events} events re-encrypted")
    if left:
        print(
            f"{left} values were written under an older key while this ran (a process started"
            " with the old key list?): restart every process with the new list and run again",
            file=sys.stderr,
        )
        return 1
    if len(settings.encryption_keys) > 1:
        print("everything is under the newest key: the older keys can be removed", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    """Adds ``helpline rekey`` to the CLI (bot/cli.py)."""
    p = subparsers.add_parser(
        "rekey",
        help="re-encrypt every stored personal field and conversation under the newest key"
        " (the first of HELPLINE_ENCRYPTION_KEY), so older keys can be removed",
    )
    p.add_argument("--batch-size", type=int, default=BATCH, help="rows per transaction")
    p.add_argument(
        "--endpoints", default=str(ROOT / "endpoints.yml"),
        help="Rasa's endpoints file, for its tracker store (default: %(default)s)",
    )  # fmt: skip
    p.set_defaults(func=cmd_rekey)
