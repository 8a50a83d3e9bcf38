"""What ``helpline run`` changes in Rasa's endpoints when several processes share the work.

One process (``make run``): the case store and Rasa's tracker store are SQLite files, Rasa's lock
store is in memory. Several (``helpline run --workers N``, or several machines each running
``helpline run``): the case store on PostgreSQL (``HELPLINE_DATABASE_URL``), Rasa's tracker
store on PostgreSQL too (the same database unless ``HELPLINE_TRACKER_DATABASE_URL`` names
another), Rasa's lock store on Redis (``HELPLINE_REDIS_URL``), and Telegram by webhook (long
polling cannot be shared). ``docs/scaling.md`` has the whole layout.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

TRACKER_STORE = "bot.tracker_store.HelplineTrackerStore"


class ScalingError(ValueError):
    """A configuration that cannot run as asked (the message says what to set)."""


def sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def tracker_store(url: str) -> dict:
    """Rasa's tracker store section for a database URL (our encrypted SQL tracker store)."""
    if sqlite(url):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return {"type": TRACKER_STORE, "dialect": "sqlite", "db": path}
    parts = urlsplit(url)
    dialect = parts.scheme.split("+")[0]
    if dialect not in ("postgresql", "postgres"):
        raise ScalingError(f"the tracker store supports SQLite and PostgreSQL, not {dialect}")
    section = {
        "type": TRACKER_STORE,
        "dialect": "postgresql",
        "url": parts.hostname or "127.0.0.1",  # Rasa passes a custom store's url as host
        "db": unquote(parts.path.lstrip("/")) or "postgres",
    }
    if parts.port:
        section["port"] = parts.port
    if parts.username:
        section["username"] = unquote(parts.username)
    if parts.password:
        section["password"] = unquote(parts.password)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if query:
        section["query"] = query
    return section


def lock_store(url: str) -> dict:
    """Rasa's Redis lock store section for ``redis://[:password@]host[:port][/db]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ScalingError(f"HELPLINE_REDIS_URL must be redis://host:port/db, not {parts.scheme}")
    section = {
        "type": "redis",
        "url": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "db": int(parts.path.lstrip("/") or 0),
        "key_prefix": "helpline",
        "use_ssl": parts.scheme == "rediss",
    }
    if parts.password:
        section["password"] = unquote(parts.password)
    return section


def endpoints_for(endpoints: dict, settings, workers: int) -> dict:
    """Rasa's endpoints for this start: the tracker store follows the case store unless told
    otherwise; a Redis lock store when a Redis URL is set. Refuses what cannot be shared."""
    endpoints = dict(endpoints)
    tracker_url = settings.tracker_database_url or (
        "" if sqlite(settings.database_url) else settings.database_url
    )
    if tracker_url:
        endpoints["tracker_store"] = tracker_store(tracker_url)
    if settings.redis_url:
        endpoints["lock_store"] = lock_store(settings.redis_url)
    if workers > 1:
        missing = []
        if sqlite(settings.database_url):
            missing.append("HELPLINE_DATABASE_URL on PostgreSQL (SQLite is for one process)")
        if sqlite((endpoints.get("tracker_store") or {}).get("dialect", "sqlite")):
            missing.append("a PostgreSQL tracker store (HELPLINE_TRACKER_DATABASE_URL)")
        if not settings.redis_url:
            missing.append("HELPLINE_REDIS_URL (Rasa's lock store)")
        if settings.telegram_token and not settings.public_url:
            missing.append(
                "HELPLINE_PUBLIC_URL: Telegram must use its webhook (long polling cannot be"
                " shared between processes)"
            )
        if missing:
            raise ScalingError(f"--workers {workers} needs " + "; ".join(missing))
    return endpoints
