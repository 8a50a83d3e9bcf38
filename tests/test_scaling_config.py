"""`helpline run --workers N`: Rasa's endpoints follow the settings (bot/scaling.py), and what
cannot be shared between processes is refused with a message that says what to set."""

from __future__ import annotations

import pytest

from bot import settings as settings_module
from bot.scaling import ScalingError, endpoints_for, lock_store, tracker_store

PG = "postgresql://helpline:s%40cret@db.internal:5433/helpline?sslmode=require"


def settings(**env):
    return settings_module.parse({"HELPLINE_ENV": "development", **env})


def test_one_process_keeps_the_endpoints_file():
    given = {"tracker_store": {"type": "x", "dialect": "sqlite", "db": "tracker.db"}}
    assert endpoints_for(given, settings(), workers=1) == given


def test_the_tracker_store_shares_the_case_stores_postgresql_unless_told_otherwise():
    shared = endpoints_for({}, settings(HELPLINE_DATABASE_URL=PG), workers=1)["tracker_store"]
    assert shared == {
        "type": "bot.tracker_store.HelplineTrackerStore", "dialect": "postgresql",
        "url": "db.internal", "port": 5433, "db": "helpline", "username": "helpline",
        "password": "s@cret", "query": {"sslmode": "require"},
    }  # fmt: skip
    other = endpoints_for(
        {},
        settings(
            HELPLINE_DATABASE_URL=PG,
            HELPLINE_TRACKER_DATABASE_URL="postgresql://postgres@127.0.0.1/trackers",
        ),
        workers=1,
    )["tracker_store"]
    assert (other["url"], other["db"], other["username"]) == ("127.0.0.1", "trackers", "postgres")


def test_redis_is_rasas_lock_store():
    assert lock_store("redis://:pw@cache:6380/2") == {
        "type": "redis", "url": "cache", "port": 6380, "db": 2, "key_prefix": "helpline",
        "use_ssl": False, "password": "pw",
    }  # fmt: skip
    with pytest.raises(ScalingError, match="redis://"):
        lock_store("http://cache:6379")


def test_several_workers_need_postgresql_redis_and_telegrams_webhook():
    with pytest.raises(ScalingError) as refused:
        endpoints_for({}, settings(TELEGRAM_BOT_TOKEN="123:abc"), workers=2)
    message = str(refused.value)
    for needed in ("HELPLINE_DATABASE_URL", "HELPLINE_REDIS_URL", "HELPLINE_PUBLIC_URL"):
        assert needed in message
    scaled = endpoints_for(
        {},
        settings(
            HELPLINE_DATABASE_URL=PG,
            HELPLINE_REDIS_URL="redis://127.0.0.1:6379/0",
            TELEGRAM_BOT_TOKEN="123:abc",
            HELPLINE_PUBLIC_URL="https://helpline.example.org",
        ),
        workers=4,
    )
    assert scaled["lock_store"]["type"] == "redis"
    assert scaled["tracker_store"]["dialect"] == "postgresql"


def test_only_sqlite_and_postgresql_trackers():
    with pytest.raises(ScalingError, match="mysql"):
        tracker_store("mysql://root@db/rasa")
    assert tracker_store("sqlite:////tmp/t.db")["db"] == "/tmp/t.db"
