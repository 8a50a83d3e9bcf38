"""Outbound rate limits (bot/channels/ratelimit.py) with real Redis and real provider clients.

Time is a controlled clock everywhere it is ours: tests count what the limiter lets through and
the waits it hands out; nothing measures how long anything took. Redis is the one on
127.0.0.1:6379 (``HELPLINE_TEST_REDIS_URL``); the tests that need it skip loudly when it is
unreachable (and fail under CI). The outage test starts and stops its own ``redis-server``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import time

import pytest

from bot.channels.inbox import SendError
from bot.channels.ratelimit import (
    DEFAULT_LIMITS,
    LocalRateLimiter,
    Rate,
    RateLimited,
    RedisRateLimiter,
    keys_for,
    limiter_for,
    limits_from_env,
    retry_after_seconds,
    sender_id_for,
    telegram_retry_after,
)
from bot.channels.telegram import TelegramSender
from bot.sms import split_for_sms
from tests.fake_providers import FakeTelegram

REDIS_URL = os.environ.get("HELPLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
SECRET = "test-pseudonym-key-for-rate-buckets"
PHONE = "+447700900123"
CHAT = "987654321"
BOT = "123456"


class Clock:
    """A clock the test moves; ``sleep`` moves it too (and records what was asked)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _redis_client():
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture
def redis_prefix():
    """A fresh key prefix on the real Redis; its keys are deleted afterwards."""
    import redis

    client = _redis_client()
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        message = f"Redis not reachable at {REDIS_URL} ({type(exc).__name__})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip("!!! " + message + ": the shared-limit tests did not run !!!")
    prefix = f"helpline:test-rate:{secrets.token_hex(4)}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def redis_keys(prefix: str) -> list[str]:
    client = _redis_client()
    try:
        return [k.decode() for k in client.scan_iter(match=prefix + "*")]
    finally:
        client.close()


def close(*limiters) -> None:
    async def closing():
        for limiter in limiters:
            await limiter.aclose()

    asyncio.run(closing())


def worst_excess(grants: list[float], rate: float, burst: int) -> float:
    """How far the grants go over ``rate * t + burst`` in their worst window (<= 0: never)."""
    grants = sorted(grants)
    worst = float("-inf")
    for i in range(len(grants)):
        for j in range(i, len(grants)):
            worst = max(worst, (j - i + 1) - (rate * (grants[j] - grants[i]) + burst))
    return worst


def hammer(limiters, key: str, clock: Clock, steps: int, seed: int) -> list[float]:
    """Two "processes" asking for more tokens than come back (up to 1.5 a step), at random
    moments: the times of the grants."""
    rng = random.Random(seed)
    grants = []
    for _ in range(steps):
        clock.advance(rng.choice([0.0, 0.0, 0.01, 0.05, 0.1, 0.3]))
        for limiter in limiters:
            for _ in range(rng.randint(2, 3)):
                if limiter.delay(key) == 0:
                    grants.append(clock.now)
    return grants


# --- shared between processes ---------------------------------------------------------------
def test_two_processes_sharing_a_redis_bucket_never_pass_rate_times_t_plus_burst(redis_prefix):
    rate, burst = 5.0, 3
    limits = {"twilio:sms": (rate, burst)}
    clock = Clock()
    key = f"twilio:sms:{PHONE}"
    first, second = (
        RedisRateLimiter(REDIS_URL, limits, prefix=redis_prefix, secret=SECRET, clock=clock)
        for _ in range(2)
    )
    start = clock.now
    grants = hammer([first, second], key, clock, steps=400, seed=13)
    close(first, second)
    assert worst_excess(grants, rate, burst) <= 1e-6
    # ...and no stricter than it must be: the demand was above the rate all along.
    assert len(grants) >= rate * (clock.now - start) + burst - 1
    assert len(redis_keys(redis_prefix)) == 1

    # The same demand on two buckets that are not shared goes over: the check above can fail.
    clock = Clock()
    apart = [LocalRateLimiter(limits, secret=SECRET, clock=clock) for _ in range(2)]
    assert worst_excess(hammer(apart, key, clock, steps=400, seed=13), rate, burst) > 1


def test_the_redis_step_is_atomic_under_concurrent_callers(redis_prefix):
    """Redis's own clock, 16 threads and two limiters at once: exactly the burst goes through
    (one token every 1000 s, so nothing refills while they race)."""
    limits = {"telegram:bot": (0.001, 5)}
    limiters = [
        RedisRateLimiter(REDIS_URL, limits, prefix=redis_prefix, secret=SECRET) for _ in range(2)
    ]
    delays: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def caller(limiter) -> None:
        start.wait()
        for _ in range(25):
            value = limiter.delay(f"telegram:bot:{BOT}")
            with lock:
                delays.append(value)

    threads = [threading.Thread(target=caller, args=(limiters[i % 2],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close(*limiters)
    assert len(delays) == 400
    assert delays.count(0.0) == 5
    assert all(0 < d <= 1000.0 for d in delays if d)


def test_concurrent_waits_are_queued_in_order_across_processes(redis_prefix):
    """Five replies at the same moment from two processes, burst 2, one a second: two go now,
    the others are given 1, 2 and 3 seconds; with ``max_wait`` a caller is told instead."""
    clock = Clock()
    limits = {"telegram:chat": (1.0, 2)}
    key = f"telegram:chat:{BOT}:{CHAT}"

    async def main():
        recorded: list[float] = []

        async def record(seconds: float) -> None:  # the clock stands still: all ask at once
            recorded.append(seconds)

        a, b = (
            RedisRateLimiter(REDIS_URL, limits, prefix=redis_prefix, secret=SECRET, clock=clock,
                             sleep=record)
            for _ in range(2)
        )  # fmt: skip
        waited = [await (a if i % 2 else b).wait(key) for i in range(5)]
        with pytest.raises(RateLimited) as refused:
            await a.wait(key, max_wait=1.0)
        after = a.delay(key)
        await a.aclose()
        await b.aclose()
        return waited, recorded, refused.value.delay, after

    waited, recorded, refused, after = asyncio.run(main())
    assert waited == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert recorded == [1.0, 2.0, 3.0]
    assert refused == 4.0 and after == 4.0  # the refused wait took nothing


# --- one process ----------------------------------------------------------------------------
def test_the_local_bucket_refills_at_its_rate_up_to_its_burst():
    clock = Clock()
    limiter = LocalRateLimiter({"twilio:whatsapp": (2.0, 3)}, secret=SECRET, clock=clock)
    key = "twilio:whatsapp:whatsapp:+15550002222"
    assert [limiter.delay(key) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.delay(key) == pytest.approx(0.5)
    clock.advance(0.25)
    assert limiter.delay(key) == pytest.approx(0.25)
    clock.advance(0.25)
    assert limiter.delay(key) == 0.0  # one token came back, and went
    assert limiter.delay(key) == pytest.approx(0.5)
    clock.advance(60)  # a long pause refills to the burst, no further
    assert [limiter.delay(key) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert limiter.delay(key) > 0
    # Costs: 2 tokens need 1 s of refill after an empty bucket; a cost over the burst goes
    # once the bucket is full (it would never go otherwise) and leaves it in debt.
    clock.advance(60)
    assert limiter.delay(key, 2) == 0.0
    assert limiter.delay(key, 2) == pytest.approx(0.5)
    clock.advance(60)
    assert limiter.delay(key, 5) == 0.0
    assert limiter.delay(key) == pytest.approx(1.5)


def test_a_burst_waits_its_turn_at_a_strict_provider_instead_of_failing():
    """The real Telegram client against a Bot API that refuses (429) a third message to a chat
    within a second, as Telegram does: five replies at once fail without the limiter and all
    arrive with it, the third one after a positive wait."""
    clock = Clock()

    class StrictTelegram(FakeTelegram):
        def answer(self, path, params):
            if path.endswith("/sendMessage"):
                chat = params.get("chat_id")
                times = self.per_chat.setdefault(chat, [])
                if sum(1 for t in times if t > clock.now - 1.0) >= 2:
                    return 429, {"ok": False, "error_code": 429,
                                 "description": "Too Many Requests: retry after 1",
                                 "parameters": {"retry_after": 1}}  # fmt: skip
                times.append(clock.now)
            return super().answer(path, params)

    server = StrictTelegram()
    server.per_chat = {}
    limits = {"telegram:chat": (1.0, 2), "telegram:bot": (25.0, 25)}

    async def send_five(limiter) -> tuple[list, list]:
        sender = TelegramSender(f"{BOT}:token", server.url)
        results, waits = [], []
        for i in range(5):
            if limiter is not None:
                waited = 0.0
                for key, cost in keys_for("telegram", BOT, CHAT):
                    waited += await limiter.wait(key, cost)
                waits.append(waited)
            try:
                results.append(await sender.send("telegram", CHAT, f"reply {i}", []))
            except SendError as exc:
                results.append(exc)
        return results, waits

    try:
        unlimited, _ = asyncio.run(send_five(None))
        clock.advance(10)
        limiter = LocalRateLimiter(limits, secret=SECRET, clock=clock, sleep=clock.sleep)
        limited, waits = asyncio.run(send_five(limiter))
    finally:
        server.close()
    failed = [r for r in unlimited if isinstance(r, SendError)]
    assert len(failed) == 3 and {e.code for e in failed} == {"telegram_429"}
    assert not [r for r in limited if isinstance(r, SendError)]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0
    assert waits == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert len(server.sent("sendMessage")) == 5 + 5  # every request reached the provider...
    assert len(server.per_chat[CHAT]) == 2 + 5  # ...and it took 2 of the first five, all later


def test_a_telegram_429_holds_the_bucket_in_every_process(redis_prefix):
    """Telegram's 429 as python-telegram-bot raises it (``RetryAfter``, from the response's
    ``parameters.retry_after``): holding the bucket for that long closes it for the other
    process too, and then it opens one message at a time."""
    from telegram.error import RetryAfter

    clock = Clock()
    server = FakeTelegram()
    server.fail_next(429, 1, {"ok": False, "error_code": 429,
                              "description": "Too Many Requests: retry after 7",
                              "parameters": {"retry_after": 7}})  # fmt: skip
    key = f"telegram:chat:{BOT}:{CHAT}"

    async def main():
        sender = TelegramSender(f"{BOT}:token", server.url)
        with pytest.raises(RetryAfter) as refused:
            await sender.bot.send_message(chat_id=int(CHAT), text="hello")
        seconds = telegram_retry_after(refused.value)
        a, b = (
            RedisRateLimiter(REDIS_URL, prefix=redis_prefix, secret=SECRET, clock=clock)
            for _ in range(2)
        )
        await a.hold(key, seconds)
        before = b.delay(key)
        clock.advance(7)
        opened = [b.delay(key), b.delay(key)]
        await a.aclose()
        await b.aclose()
        return seconds, before, opened

    try:
        seconds, before, opened = asyncio.run(main())
    finally:
        server.close()
    assert seconds == 7.0
    assert before == 7.0
    assert opened[0] == 0.0 and opened[1] > 0


# --- no identity in clear -------------------------------------------------------------------
def test_no_phone_number_or_chat_id_in_a_redis_key_or_a_log(redis_prefix, caplog):
    caplog.set_level(logging.DEBUG)
    limiter = RedisRateLimiter(REDIS_URL, prefix=redis_prefix, secret=SECRET)
    wa_address = f"whatsapp:{PHONE}"
    replies = [
        ("sms", "+15550001111", PHONE),
        ("whatsapp", "whatsapp:+15550002222", wa_address),
        ("telegram", BOT, CHAT),
    ]

    async def main():
        for channel, sender, address in replies:
            for key, cost in keys_for(channel, sender, address, text="Hello."):
                await limiter.wait(key, cost)
        await limiter.aclose()

    asyncio.run(main())
    keys = redis_keys(redis_prefix)
    assert len(keys) == 5  # chat, bot, pair, whatsapp sender, sms sender
    clear = [PHONE, PHONE.lstrip("+"), PHONE[-6:], CHAT, BOT, "15550001111", "15550002222"]
    assert not [k for k in keys for c in clear if c in k]
    assert not [c for c in clear if c in caplog.text]
    # The process's own buckets are named the same way.
    local = LocalRateLimiter(secret=SECRET)
    for channel, sender, address in replies:
        for key, cost in keys_for(channel, sender, address):
            local.delay(key, cost)
    assert not [k for k in local._tats for c in clear if c in k]
    # An unknown kind is refused without repeating the key.
    with pytest.raises(ValueError) as error:
        local.delay(f"{PHONE}:x:{CHAT}")
    assert PHONE not in str(error.value) and CHAT not in str(error.value)


# --- Redis down -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 20
    while True:  # wait for it to answer (a start-up, not a timed assertion)
        try:
            client.ping()
            client.close()
            return process
        except redis.exceptions.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the test's own redis-server did not start")
            time.sleep(0.05)


def _keys_at(port: int) -> list[bytes]:
    import redis

    client = redis.Redis(port=port)
    try:
        return client.keys("helpline:rate:*")
    finally:
        client.close()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def test_a_redis_outage_falls_back_to_local_limits_and_recovers(caplog):
    if shutil.which("redis-server") is None:
        pytest.skip("!!! redis-server is not installed: the outage test did not run !!!")

    caplog.set_level(logging.WARNING, logger="bot.channels.ratelimit")
    port = _free_port()
    server = _start_redis(port)
    clock = Clock()
    url = f"redis://127.0.0.1:{port}/0"
    limiter = limiter_for(url, {"twilio:sms": (1.0, 2)}, secret=SECRET, clock=clock,
                          sleep=clock.sleep)  # fmt: skip
    assert isinstance(limiter, RedisRateLimiter)
    key = f"twilio:sms:{PHONE}"
    try:
        assert [limiter.delay(key), limiter.delay(key)] == [0.0, 0.0]
        assert limiter.delay(key) == pytest.approx(1.0)
        assert len(_keys_at(port)) == 1
        _stop(server)

        # Down: sends are limited in this process (a fresh bucket), not failed.
        assert [limiter.delay(key), limiter.delay(key)] == [0.0, 0.0]
        assert limiter.delay(key) == pytest.approx(1.0)
        assert asyncio.run(limiter.wait(key)) == pytest.approx(1.0)
        warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per send

        # Back: after the retry pause, the shared bucket is used again.
        server = _start_redis(port)
        clock.advance(limiter.retry_after)
        assert limiter.delay(key) == 0.0
        assert len(_keys_at(port)) == 1
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        close(limiter)
        if server.poll() is None:
            _stop(server)


def test_an_unreachable_redis_never_fails_a_send_nor_logs_its_url(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"redis://:hunter2-not-logged@127.0.0.1:{_free_port()}/0"  # nothing listens there
    clock = Clock()
    limiter = limiter_for(url, {"telegram:chat": (1.0, 2)}, secret=SECRET, clock=clock,
                          sleep=clock.sleep)  # fmt: skip
    key = f"telegram:chat:{BOT}:{CHAT}"

    async def main():
        waited = [await limiter.wait(key) for _ in range(3)]
        await limiter.aclose()
        return waited

    assert asyncio.run(main()) == [0.0, 0.0, 1.0]
    assert "Redis unreachable" in caplog.text
    assert "hunter2" not in caplog.text and CHAT not in caplog.text


# --- which buckets, what limits -------------------------------------------------------------
def test_keys_for_names_the_buckets_of_each_channel_narrowest_first():
    long_text = " ".join(
        f"Sentence number {i} of a long answer about your rights." for i in range(12)
    )
    parts = len(split_for_sms(long_text, 4))
    assert parts == 4
    cases = [
        ("telegram", {}, [(f"telegram:chat:{BOT}:{CHAT}", 1), (f"telegram:bot:{BOT}", 1)]),
        ("whatsapp", {}, [(f"twilio:whatsapp_pair:{BOT}:{CHAT}", 1),
                          (f"twilio:whatsapp:{BOT}", 1)]),
        ("sms", {}, [(f"twilio:sms:{BOT}", 1)]),
        ("sms", {"text": "Hello."}, [(f"twilio:sms:{BOT}", 1)]),
        ("sms", {"text": long_text}, [(f"twilio:sms:{BOT}", 4)]),
        ("sms", {"text": long_text, "parts_sent": 1}, [(f"twilio:sms:{BOT}", 3)]),
        ("sms", {"text": long_text, "segment_budget": 2}, [(f"twilio:sms:{BOT}", 2)]),
        ("simulator", {}, []),
    ]  # fmt: skip
    for channel, options, expected in cases:
        assert keys_for(channel, BOT, CHAT, **options) == expected, channel
    # Every key keys_for makes has a default rate.
    limiter = LocalRateLimiter()
    for channel in ("telegram", "whatsapp", "sms"):
        for key, cost in keys_for(channel, BOT, CHAT):
            assert limiter.delay(key, cost) == 0.0


def test_sender_id_is_the_bot_id_never_the_token():
    class Settings:
        telegram_token = f"{BOT}:AAE-secret-part"
        twilio_sms_number = "+15550001111"
        twilio_whatsapp_sender = "whatsapp:+15550002222"

    assert sender_id_for("telegram", Settings) == BOT
    assert sender_id_for("sms", Settings) == "+15550001111"
    assert sender_id_for("whatsapp", Settings) == "whatsapp:+15550002222"
    assert sender_id_for("simulator", Settings) == ""


def test_limits_come_from_defaults_the_environment_and_plain_arguments():
    rates = limits_from_env({})
    assert {k: (r.per_s, r.burst) for k, r in rates.items()} == DEFAULT_LIMITS
    rates = limits_from_env(
        {"HELPLINE_RATE_TWILIO_SMS_PER_S": "30", "HELPLINE_RATE_TWILIO_SMS_BURST": "30",
         "HELPLINE_RATE_TELEGRAM_CHAT_BURST": " ", "UNRELATED": "x"},
        overrides={"telegram:bot": (10, 5)},
    )  # fmt: skip
    assert rates["twilio:sms"] == Rate(30.0, 30)
    assert rates["telegram:chat"] == Rate(1.0, 3)
    assert rates["telegram:bot"] == Rate(10.0, 5)
    for name, value in [
        ("HELPLINE_RATE_TWILIO_SMS_PER_S", "fast"),
        ("HELPLINE_RATE_TWILIO_SMS_PER_S", "0"),
        ("HELPLINE_RATE_TWILIO_SMS_PER_S", "nan"),
        ("HELPLINE_RATE_TELEGRAM_BOT_BURST", "2.5"),
        ("HELPLINE_RATE_TELEGRAM_BOT_BURST", "0"),
    ]:
        with pytest.raises(ValueError, match=name.rsplit("_", 1)[0]):
            limits_from_env({name: value})
    with pytest.raises(ValueError):
        LocalRateLimiter({"Twilio SMS": (1, 1)})
    with pytest.raises(ValueError):
        LocalRateLimiter().delay("telegram:bot", 0)


def test_retry_after_is_read_from_seconds_or_a_date():
    from email.message import Message

    from requests.structures import CaseInsensitiveDict

    now = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=dt.timezone.utc)
    http_message = Message()
    http_message["Retry-After"] = "Mon, 05 Jan 2026 12:00:30 GMT"
    cases = [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": " 3 "}, 3.0),
        (CaseInsensitiveDict({"RETRY-AFTER": "1.5"}), 1.5),
        (http_message, 30.0),
        ({"Retry-After": "Mon, 05 Jan 2026 11:59:00 GMT"}, 0.0),  # in the past: now
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
        (None, None),
    ]
    for headers, expected in cases:
        assert retry_after_seconds(headers, now=now) == expected, headers


def test_telegram_retry_after_reads_python_telegram_bots_exception():
    from telegram.error import RetryAfter

    assert telegram_retry_after(RetryAfter(12)) == 12.0
    assert telegram_retry_after(RetryAfter(dt.timedelta(seconds=2.5))) == 2.5
    assert telegram_retry_after(ValueError("no")) is None
