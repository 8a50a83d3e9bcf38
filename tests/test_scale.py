"""Two replicas, one database: the scale test of issue 13, with real processes.

PostgreSQL (the case store, the shared queue and Rasa's tracker store), Redis (Rasa's lock store
and the shared rate limits), and two replicas started the documented way (`helpline db upgrade`
once, then `helpline run --no-migrate` for each, in production mode) behind no load balancer:
the test sends signed Twilio (SMS and WhatsApp) and Telegram webhooks from 200 workers, 2,000
messages, to both replicas alternately, as a load balancer would, and kills one replica with
SIGKILL in the middle (its whole process group: Rasa and anything it started), then starts it
again. Telegram's and Twilio's APIs are fakes on loopback that record every reply.

Afterwards:
- every accepted message was answered (status done, its replies sent), and each message's
  replies were stored once (one Rasa turn's worth);
- every worker's replies reached the provider in the order of their messages;
- no reply went to another worker (each reply's recipient is its contact's address);
- nothing is left pending or queued, and no worker leased: the only leases left are the killed
  replica's, expired, for workers whose turn it had finished but not let go when it died.
A reply in flight at the moment of the kill (the provider took it, the replica died before
recording that) is sent again by the replica that takes the worker over: at least once, never
lost (bot/channels/outbox.py). Those repeats are counted and bounded by the killed replica's
concurrency; they are the only sends that do not match a stored reply.

Sizes: HELPLINE_SCALE_WORKERS (200) and HELPLINE_SCALE_MESSAGES (10 per worker).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.store import Database
from bot.store.models import Contact, Message, QueueLease, utcnow
from tests.fake_providers import FakeTelegram, FakeTwilio, signed_twilio_post
from tests.live_server import ROOT, free_port
from tests.store_backends import postgres_database

pytestmark = pytest.mark.slow

WORKERS = int(os.environ.get("HELPLINE_SCALE_WORKERS", "200"))
PER_WORKER = int(os.environ.get("HELPLINE_SCALE_MESSAGES", "10"))
LEASE = 5  # seconds: the killed replica's workers are taken over after this
CONCURRENCY = 4  # workers each replica processes at once (HELPLINE_QUEUE_CONCURRENCY)
SID = "AC" + "5" * 32
AUTH = secrets.token_hex(16)
PUBLIC = "https://helpline.example.org"
SMS_NUMBER, WHATSAPP = "+15550001111", "whatsapp:+15550002222"
# What workers write: a conversation that stays in the rights menu (every message answered).
SCRIPT = ["hello", "1", "my boss keeps my passport", "menu", "1", "salary not paid 3 months",
          "menu", "thank you", "1", "how many hours can i work"]  # fmt: skip
REDIS_DB = 14


class Recording:
    """Every reply the fake provider took, in the order it took them: (recipient, text)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.replies: list[tuple[str, str]] = []

    def add(self, to: str, text: str) -> None:
        with self.lock:
            self.replies.append((to, text))


class RecordingTelegram(FakeTelegram):
    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        super().__init__()

    def respond(self, path, params):  # no request log: 2,000+ replies
        if path.endswith("sendMessage"):
            self.recording.add(str(params.get("chat_id")), params.get("text", ""))
        return self.answer(path, params)


class RecordingTwilio(FakeTwilio):
    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        super().__init__()

    def respond(self, path, params):
        if params.get("To"):
            self.recording.add(params["To"], params.get("Body", ""))
        return self.answer(path, params)


def _redis_url() -> str:
    import redis

    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.exceptions.ConnectionError:
        subprocess.run(["redis-server", "--daemonize", "yes"], capture_output=True, check=False)
        time.sleep(1)
        try:
            redis.Redis.from_url(url).flushdb()
        except redis.exceptions.ConnectionError:
            message = "Redis not reachable on 127.0.0.1:6379 and could not be started"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip("!!! " + message + " !!!")
    return url


class Replica:
    """One `helpline run --no-migrate` in its own process group."""

    def __init__(self, name: str, env: dict, tmp: Path) -> None:
        self.name, self.env, self.tmp = name, env, tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.killed_pids: list[int] = []

    def start(self) -> None:
        self.starts += 1
        log = open(self.tmp / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--no-migrate", "--port", str(self.port),
             "--actions-port", str(free_port()), "--dashboard-port", "0"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=self.env,
        )  # fmt: skip

    def up(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.base}/", timeout=5).read()
            return True
        except OSError:
            return False

    def wait_up(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not self.up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.tmp / f"{self.name}-{self.starts}.log").read_text()[-3000:]
                pytest.fail(f"replica {self.name} did not start:\n{log}")
            time.sleep(0.5)

    def kill(self) -> None:
        self.killed_pids.append(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def telegram_post(base: str, update: dict, secret: str) -> int | None:
    request = urllib.request.Request(
        f"{base}/webhooks/telegram/webhook", data=json.dumps(update).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def masked(text: str) -> str:
    """Replies are stored with a case's secret masked; compare without digits runs."""
    return re.sub(r"\d{6}", "######", text)


def test_two_replicas_one_killed_answer_every_message_once_in_order(tmp_path):
    from bot.sms import split_for_sms

    url, drop = postgres_database()
    redis_url = _redis_url()
    recording = Recording()
    telegram, twilio = RecordingTelegram(recording), RecordingTwilio(recording)
    telegram_secret = secrets.token_urlsafe(32)
    keys = {"HELPLINE_ENCRYPTION_KEY": None, "HELPLINE_PSEUDONYM_KEY": secrets.token_urlsafe(32)}
    from cryptography.fernet import Fernet

    keys["HELPLINE_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "RASA_TELEMETRY_ENABLED": "false",
        "HELPLINE_ENV": "production",
        **keys,
        "HELPLINE_DATABASE_URL": url,
        "HELPLINE_REDIS_URL": redis_url,
        "HELPLINE_PUBLIC_URL": PUBLIC,
        "HELPLINE_SIMULATOR": "",
        "TELEGRAM_BOT_TOKEN": "123456:" + secrets.token_hex(8),
        "TELEGRAM_WEBHOOK_SECRET": telegram_secret,
        "TELEGRAM_API_BASE": telegram.url,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_SMS_NUMBER": SMS_NUMBER,
        "TWILIO_WHATSAPP_SENDER": WHATSAPP,
        "TWILIO_API_BASE": twilio.url,
        "HELPLINE_QUEUE_LEASE_SECONDS": str(LEASE),
        "HELPLINE_QUEUE_CONCURRENCY": str(CONCURRENCY),
        "LOCK_LIFETIME": str(LEASE),  # Rasa's lock of a killed replica expires with its lease
        # A short code's and a business sender's rates: this test is about the queue.
        "HELPLINE_RATE_TWILIO_SMS_PER_S": "1000",
        "HELPLINE_RATE_TWILIO_SMS_BURST": "1000",
        "HELPLINE_RATE_TWILIO_WHATSAPP_PAIR_PER_S": "100",
        "HELPLINE_RATE_TWILIO_WHATSAPP_PAIR_BURST": "100",
        "HELPLINE_RATE_TELEGRAM_CHAT_PER_S": "100",
        "HELPLINE_RATE_TELEGRAM_CHAT_BURST": "100",
        "HELPLINE_RATE_TELEGRAM_BOT_PER_S": "1000",
        "HELPLINE_RATE_TELEGRAM_BOT_BURST": "1000",
    }
    env.pop("HELPLINE_ACTIONS_URL", None)
    # Once, before the replicas: the documented migration job.
    subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    replicas = [Replica("a", env, tmp_path), Replica("b", env, tmp_path)]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_up()
        db = Database(url, [keys["HELPLINE_ENCRYPTION_KEY"]])
        try:
            _run(replicas, telegram_secret, recording, db)
            _check(db, recording, split_for_sms)
        finally:
            db.dispose()
    finally:
        for replica in replicas:
            replica.stop()
        telegram.close()
        twilio.close()
        drop()


def _run(replicas: list[Replica], telegram_secret: str, recording: Recording, db) -> None:
    ids = itertools.count(10_000)
    accepted = collections.Counter()
    killed = threading.Event()
    sent_count = itertools.count(1)
    half = WORKERS * PER_WORKER // 2
    lock = threading.Lock()

    def deliver(target: int, send) -> None:
        """Like a load balancer: the replica in turn, the other one while it is down; a
        provider retries until it gets an answer (nothing refused is counted as accepted)."""
        for attempt in range(600):
            replica = replicas[(target + attempt) % 2]
            status = send(replica.base)
            if status == 200:
                return
            assert status is None, f"webhook refused with {status}"  # down: try the other
            time.sleep(0.1)
        pytest.fail("no replica accepted a message for 60 s")

    def worker(w: int) -> None:
        kind = ("telegram", "sms", "whatsapp")[w % 3]
        for i, text in enumerate(SCRIPT[:PER_WORKER] * (1 + PER_WORKER // len(SCRIPT))):
            if i >= PER_WORKER:
                break
            uid = next(ids)
            if kind == "telegram":
                chat = 900_000 + w
                update = {"update_id": uid, "message": {
                    "message_id": uid, "date": int(time.time()), "text": text,
                    "chat": {"id": chat, "type": "private"},
                    "from": {"id": chat, "is_bot": False, "first_name": "W"}}}  # fmt: skip
                deliver(w + i, lambda base, u=update: telegram_post(base, u, telegram_secret))
            else:
                number = f"+6011{w:07d}"
                form = {"AccountSid": SID, "MessageSid": f"SM{uid:032d}", "Body": text,
                        "From": f"whatsapp:{number}" if kind == "whatsapp" else number,
                        "To": WHATSAPP if kind == "whatsapp" else SMS_NUMBER, "NumMedia": "0"}
                deliver(w + i, lambda base, f=form: signed_twilio_post(
                    base, f, auth_token=AUTH, public_url=PUBLIC))  # fmt: skip
            with lock:
                accepted[kind] += 1
            if next(sent_count) == half and not killed.is_set():
                killed.set()
                replicas[0].kill()  # SIGKILL, mid-stream, whatever it was doing
                threading.Thread(target=restart, daemon=True).start()

    def restart() -> None:
        replicas[0].start()
        replicas[0].wait_up()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, range(WORKERS)))
    accepted_after = time.monotonic() - started
    assert killed.is_set()
    # Wait until every message is answered (or nothing moves for 2 minutes).
    last, still = -1, time.monotonic()
    while True:
        n = len(recording.replies)
        if n != last:
            last, still = n, time.monotonic()
        if _drained(db) or time.monotonic() - still > 120:
            break
        time.sleep(1)
    print(f"\nscale: {sum(accepted.values())} messages accepted in {accepted_after:.0f} s"
          f" ({dict(accepted)}), {len(recording.replies)} provider sends after"
          f" {time.monotonic() - started:.0f} s; replica a started {replicas[0].starts} times")


def _drained(db: Database) -> bool:
    with db.session() as s:
        return not s.query(Message).filter(Message.status.in_(("pending", "queued"))).count()


def _check_leases(db: Database, replicas: list[Replica]) -> None:
    """A running replica lets every worker go once its turn is over (the last release may
    follow the last reply by a moment). The only leases left are the killed process's for
    workers whose turn it had finished but not yet released: expired, so nobody waits for
    them, and deleted by the purge ten minutes on."""
    killed = {pid for replica in replicas for pid in replica.killed_pids}
    assert killed
    deadline = time.monotonic() + 30
    while True:
        with db.session() as s:
            leases = [(lease.owner, lease.expires_at) for lease in s.query(QueueLease)]
        now = utcnow()
        live = [owner for owner, expires in leases if expires > now]
        if not live or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not live, f"{len(live)} workers still leased 30 s after the queue drained"
    assert all(int(owner.split(":")[1]) in killed for owner, _ in leases), leases
    print(f"scale: {len(leases)} expired leases of the killed replica left (purged after 10 min)")


def _check(db: Database, recording: Recording, split_for_sms) -> None:
    with db.session() as s:
        inbound = s.query(Message).filter_by(direction="in").all()
        assert len(inbound) == WORKERS * PER_WORKER  # every accepted message stored once
        statuses = collections.Counter(m.status for m in inbound)
        assert statuses == {"done": WORKERS * PER_WORKER}, statuses
        out = s.query(Message).filter_by(direction="out").order_by(Message.id).all()
        assert collections.Counter(m.status for m in out) == {"sent": len(out)}
        answered = {m.reply_to_id for m in out}
        assert all(m.id in answered for m in inbound)  # every message has its replies
        # One turn's worth of replies per message: no message answered twice.
        per_message = collections.Counter((m.reply_to_id, m.author, masked(m.text)) for m in out)
        assert max(per_message.values()) == 1
        expected: dict[str, list[str]] = collections.defaultdict(list)
        last_reply_to: dict[int, int] = {}
        for m in out:
            contact = s.get(Contact, m.contact_id)
            # In the order of the worker's messages (out ids follow processing order).
            assert m.reply_to_id >= last_reply_to.get(contact.id, 0)
            last_reply_to[contact.id] = m.reply_to_id
            address = contact.address.removeprefix("whatsapp:") if m.channel == "sms" else (
                contact.address)  # fmt: skip
            parts = split_for_sms(m.text) if m.channel == "sms" else [m.text]
            expected[address] += [masked(p) for p in parts]
    got: dict[str, list[str]] = collections.defaultdict(list)
    for to, text in recording.replies:
        got[to].append(masked(text))
    assert set(got) == set(expected)  # no reply to anyone who did not write
    repeats = 0
    for address, texts in expected.items():
        # What the provider got must be the stored replies in order, where the only extras
        # are repeats of what that worker already got (a reply, or the first parts of an SMS,
        # in flight at the kill and sent again by the replica that took the worker over).
        done = 0
        for text in got[address]:
            if done < len(texts) and text == texts[done]:
                done += 1
            else:
                assert text in texts[:done], (
                    f"a reply out of order or not stored, for one worker ({address[-4:]}): "
                    f"stored {texts}, provider got {got[address]}"
                )
                repeats += 1
        assert done == len(texts), f"replies missing for one worker ({address[-4:]})"
    print(f"scale: {len(out)} replies stored, {repeats} sent twice (in flight at the kill)")
    assert repeats <= CONCURRENCY * 4  # at most the in-flight replies (4 SMS parts each)
