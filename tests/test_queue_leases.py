"""Several processes sharing the channels' queue (bot/store/queue.py leases, bot/channels/inbox.py)
on real SQLite and PostgreSQL. Two ``Inbox`` objects with their own lease owner stand for two
processes (each has its own owner name, state and database connections, as a process would);
the test with real processes killed by SIGKILL is tests/test_scale.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random

import pytest
from sqlalchemy import update

from bot import settings as settings_module
from bot.channels import config as channel_config
from bot.channels.contract import Inbound
from bot.channels.inbox import Inbox, QueueOptions
from bot.channels.telegram import TelegramSender
from bot.store import Database, queue
from bot.store.models import Contact, Message, QueueLease, utcnow
from tests.fake_providers import FakeTelegram
from tests.store_backends import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/q.db"
    else:
        url, drop = postgres_database()
    app = settings_module.load({"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": url})
    db = Database(url, app.encryption_keys)
    db.upgrade()
    yield db, app
    db.dispose()
    if drop:
        drop()


@pytest.fixture
def telegram():
    fake = FakeTelegram()
    yield fake
    fake.close()


class SlowRasa:
    """Answers "re: <text>" after a random pause, so that two processes' turns interleave;
    records every turn it ran."""

    def __init__(self, name: str, seen: list) -> None:
        self.name = name
        self.seen = seen

    async def __call__(self, message) -> None:
        self.seen.append((self.name, message.sender_id, message.text))
        await asyncio.sleep(random.uniform(0, 0.01))
        await message.output_channel.send_text_message(message.sender_id, f"re: {message.text}")


def make_inbox(db, app, telegram, name: str, seen: list, **options) -> Inbox:
    settings = channel_config.load(
        {
            "TELEGRAM_BOT_TOKEN": "123:abc",
            "TELEGRAM_WEBHOOK_SECRET": "s3cret",
            "TELEGRAM_API_BASE": telegram.url,
        }
    )
    box = Inbox(
        db,
        app.pseudonym_key,
        settings,
        senders={"telegram": TelegramSender("123:abc", telegram.url)},
        options=QueueOptions(**options),
    )
    box.on_new_message = SlowRasa(name, seen)
    return box


def test_a_lease_is_held_by_one_owner_until_it_expires(database):
    db, _ = database
    with db.session() as s:
        contact = Contact(pseudonym="p" * 64, channel="telegram")
        s.add(contact)
        s.flush()
        cid = contact.id
    with db.session() as s:
        assert queue.claim(s, cid, "a", 30)
    with db.session() as s:
        assert not queue.claim(s, cid, "b", 30)  # a holds it
        assert queue.claim(s, cid, "a", 30)  # re-entrant for its owner
        assert queue.renew(s, cid, "a", 30) and not queue.renew(s, cid, "b", 30)
    with db.session() as s:  # a died: its lease runs out
        s.execute(update(QueueLease).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    with db.session() as s:
        assert queue.claim(s, cid, "b", 30)
    with db.session() as s:
        assert not queue.fence(s, cid, "a", 30)  # a woke up: it may store nothing
        queue.release(s, cid, "a")  # and cannot free b's lease
        assert s.get(QueueLease, cid).owner == "b"
        queue.release(s, cid, "b")
    with db.session() as s:
        assert s.query(QueueLease).count() == 0


def test_two_processes_answer_each_message_once_and_in_order(database, telegram):
    db, app = database
    seen: list = []
    a = make_inbox(db, app, telegram, "a", seen, concurrency=3, batch=10)
    b = make_inbox(db, app, telegram, "b", seen, concurrency=3, batch=10)
    workers, per_worker = 12, 5

    async def scenario() -> None:
        # Webhooks arrive at both processes alternately, each schedules the worker at once
        # (as base.HelplineChannel does), while both sweep.
        for i in range(per_worker):
            for w in range(workers):
                box = (a, b)[(i + w) % 2]
                cid = box.accept(Inbound("telegram", str(5000 + w), f"{w}-{i}", f"w{w} m{i}"))
                box.schedule(cid)
            await asyncio.gather(a.run_due(), b.run_due())
        for _ in range(200):
            await asyncio.gather(a.run_due(), b.run_due())
            await asyncio.sleep(0.01)
            with db.session() as s:
                if not s.query(Message).filter(Message.status.in_(("pending", "queued"))).count():
                    break
        await asyncio.gather(*a._tasks, *b._tasks)

    asyncio.run(scenario())
    sent = telegram.sent("sendMessage")
    by_worker: dict[str, list[str]] = {}
    for message in sent:
        by_worker.setdefault(message["chat_id"], []).append(message["text"])
    assert len(sent) == workers * per_worker  # every message answered exactly once
    for w in range(workers):
        assert by_worker[str(5000 + w)] == [f"re: w{w} m{i}" for i in range(per_worker)]
    assert len(seen) == workers * per_worker  # each turn ran once, in one process or the other
    assert {name for name, _, _ in seen} == {"a", "b"}  # both processes took part
    with db.session() as s:
        assert s.query(QueueLease).count() == 0  # the lease table does not grow


def test_a_dead_process_loses_its_workers_after_the_lease(database, telegram):
    db, app = database
    seen: list = []
    b = make_inbox(db, app, telegram, "b", seen, lease_seconds=30)
    cid = b.accept(Inbound("telegram", "6001", "1", "still there?"))
    with db.session() as s:  # process a took the worker, then was killed
        assert queue.claim(s, cid, "dead-process", 30)
    asyncio.run(b.run_due())
    assert seen == [] and telegram.sent("sendMessage") == []  # b waits for the lease
    with db.session() as s:
        s.execute(update(QueueLease).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    asyncio.run(b.run_due())
    assert [m["text"] for m in telegram.sent("sendMessage")] == ["re: still there?"]


def test_a_process_that_stalled_past_its_lease_stores_nothing(database, telegram):
    db, app = database
    seen: list = []
    a = make_inbox(db, app, telegram, "a", seen)
    cid = a.accept(Inbound("telegram", "6002", "1", "hello"))

    class Stalls:
        async def __call__(self, message) -> None:
            seen.append(("a", message.sender_id, message.text))
            with db.session() as s:  # meanwhile a's lease ran out and b took the worker
                s.execute(update(QueueLease).values(owner="b"))
            await message.output_channel.send_text_message(message.sender_id, "re: stale")

    a.on_new_message = Stalls()
    asyncio.run(a.process(cid))
    assert telegram.sent("sendMessage") == []  # a sent nothing
    with db.session() as s:
        assert [m.status for m in s.query(Message)] == ["pending"]  # b will answer it
        assert s.query(QueueLease).one().owner == "b"


def test_a_backlog_drains_concurrently_in_bounded_batches(database, telegram):
    db, app = database
    seen: list = []
    a = make_inbox(db, app, telegram, "a", seen, concurrency=4, batch=8)
    running, peak = 0, 0
    full: dict = {}

    class Counts:
        async def __call__(self, message) -> None:
            """Waits (up to 2 s) until 4 turns run at once: they do if the sweep runs them
            concurrently; one by one, the peak stays 1."""
            nonlocal running, peak
            event = full.setdefault(asyncio.get_running_loop(), asyncio.Event())
            running += 1
            peak = max(peak, running)
            if running >= 4:
                event.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), 2)
            running -= 1
            await message.output_channel.send_text_message(message.sender_id, "ok")

    a.on_new_message = Counts()
    for w in range(20):
        a.accept(Inbound("telegram", str(7000 + w), str(w), "backlog"))
    taken = asyncio.run(a.run_due())
    assert taken == 8 and peak == 4  # 8 workers taken, 4 at a time, not one by one
    while asyncio.run(a.run_due()):
        pass
    assert len(telegram.sent("sendMessage")) == 20


def test_a_clean_shutdown_finishes_the_turn_then_lets_go_at_once(database, telegram):
    db, app = database
    seen: list = []
    a = make_inbox(db, app, telegram, "a", seen)
    b = make_inbox(db, app, telegram, "b", seen)
    cid = a.accept(Inbound("telegram", "6003", "1", "first"))
    a.accept(Inbound("telegram", "6003", "2", "second"))

    class StopsMidTurn:
        async def __call__(self, message) -> None:
            seen.append(("a", message.sender_id, message.text))
            stopping = asyncio.get_running_loop().create_task(a.stop())  # SIGTERM meanwhile
            await asyncio.sleep(0.05)
            await message.output_channel.send_text_message(message.sender_id, "re: first")
            a.stopped = stopping

    a.on_new_message = StopsMidTurn()

    async def scenario() -> None:
        await a.process(cid)
        await a.stopped

    asyncio.run(scenario())
    assert [m["text"] for m in telegram.sent("sendMessage")] == ["re: first"]  # finished
    with db.session() as s:
        assert s.query(QueueLease).count() == 0  # let go at once, not after the lease
    asyncio.run(b.run_due())  # another process takes the rest without waiting
    assert [m["text"] for m in telegram.sent("sendMessage")] == ["re: first", "re: second"]
