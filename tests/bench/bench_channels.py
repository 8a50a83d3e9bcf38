"""`make bench`, channel run: concurrent workers through the signed Twilio webhook, ours next to
stock Rasa's REST channel.

Starts the real `helpline run` (`tests.live_server.start`) with the Twilio channel configured
against a fake Twilio API on loopback (`tests.fake_providers.FakeTwilio`, which the twilio client
in the server calls through ``TWILIO_API_BASE``). Then N simulated workers at once, each with its
own phone number, half on SMS and half on WhatsApp, each running bench_dialogue's helpline
conversation in one of the 8 languages (held-out messages, then menu digits): every message is a
form-encoded request to ``POST /webhooks/twilio/webhook`` signed as Twilio signs it
(``RequestValidator.compute_signature`` over ``HELPLINE_PUBLIC_URL`` + path and the form), and the
worker waits until the whole reply has arrived before writing again. Per message:

- **ack**: from the webhook POST to its response (verification, storing the message, TwiML).
- **reply**: from the webhook POST to the fake Twilio receiving the Messages API call of the
  reply's first part (a reply counts as delivered when its first part arrives: SMS replies are
  split into numbered parts, and a turn may have several replies).
- **whole reply**: to the last outbound call of that turn (every reply, every part).

In the same run: the same number of workers and turns through the REST channel, to our server
(the same conversation, answered synchronously, without the queue; not with ``--no-rest``) and
to a stock `rasa init` project (bench_dialogue's mood-bot conversation; not with
``--no-stock``). For REST the reply is the HTTP response: ack, reply and whole reply are one.
Every message through Twilio is checked: answered exactly once (each reply stored for it reached
the fake exactly once, with all its parts, and nothing else did), none lost; and the server log
must not contain any worker's phone number.

    python tests/bench/bench_channels.py [--workers 16] [--turns 6] [--rounds 3] [--no-stock]
        [--no-rest] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HELPLINE_ENV", "development")  # the servers' development keys

from tests.bench.bench_dialogue import (  # noqa: E402
    LANGUAGES,
    concurrently,
    drive,
    machine,
    our_script,
    p50_p95,
    stock_script,
    stock_server,
    write_section,
)
from tests.fake_providers import FakeTwilio, signed_twilio_post  # noqa: E402
from tests.live_server import call, start  # noqa: E402

SID = "AC" + "5" * 32
AUTH = "bench-twilio-auth-token"
PUBLIC = "https://helpline.example.org"
SMS_NUMBER = "+15550001111"
WHATSAPP_SENDER = "whatsapp:+15550002222"
TURN_TIMEOUT = 120.0  # seconds a worker waits for a reply before counting the message as lost
PART = re.compile(r"^\((\d+)/(\d+)\) ")


@dataclasses.dataclass
class Sent:
    at: float  # time.monotonic() when the fake Twilio received the Messages API call
    sid: str
    body: str


class Outbox(FakeTwilio):
    """The fake Twilio, with every Messages API call indexed by recipient, timed, and announced
    (``arrived``) to the workers waiting for their reply."""

    def __init__(self) -> None:
        self.by_address: dict[str, list[Sent]] = collections.defaultdict(list)
        self.arrived = threading.Condition()
        super().__init__()

    def answer(self, path: str, params: dict) -> tuple[int, dict]:
        at = time.monotonic()
        status, body = super().answer(path, params)
        if path.endswith("/Messages.json"):
            with self.arrived:
                self.by_address[params.get("To", "")].append(
                    Sent(at, body["sid"], params.get("Body", ""))
                )
                self.arrived.notify_all()
        return status, body

    def count(self, address: str) -> int:
        with self.arrived:
            return len(self.by_address[address])

    def since(self, address: str, start: int) -> list[Sent]:
        with self.arrived:
            return list(self.by_address[address][start:])


@dataclasses.dataclass
class Worker:
    index: int
    number: str  # never printed, never expected in the log
    channel: str  # sms, whatsapp
    script: list[str]

    @property
    def address(self) -> str:
        return ("whatsapp:" if self.channel == "whatsapp" else "") + self.number


@dataclasses.dataclass
class Turn:
    worker: int
    turn: int
    channel: str
    status: int  # the webhook's HTTP status
    ack: float
    first: float | None = None
    whole: float | None = None
    problem: str | None = None  # None: answered exactly once
    sent: list[Sent] = dataclasses.field(default_factory=list)


def workers(n: int, turns: int, round_: int) -> list[Worker]:
    """n workers of one round: distinct numbers, every language on SMS and on WhatsApp."""
    return [
        Worker(
            index=i,
            number=f"+6017{round_:02d}{i:05d}",
            channel="whatsapp" if (i + i // len(LANGUAGES)) % 2 else "sms",
            script=our_script(i + round_)[:turns],
        )
        for i in range(n)
    ]


def signed_post(base: str, params: dict) -> int | None:
    return signed_twilio_post(base, params, auth_token=AUTH, public_url=PUBLIC, timeout=60)


class Store:
    """Read-only look at the server's case store: the inbound message and the replies stored for
    it (ids and statuses only, nothing decrypted)."""

    def __init__(self, database_url: str) -> None:
        from bot import settings as settings_module
        from bot.store import Database

        self.db = Database(database_url, settings_module.load().encryption_keys)

    def state(self, channel: str, provider_id: str) -> tuple[str | None, list[tuple]]:
        from sqlalchemy import select

        from bot.store.models import Message

        with self.db.session() as session:
            inbound = session.execute(
                select(Message.id, Message.status).where(
                    Message.channel == channel,
                    Message.provider_id == provider_id,
                    Message.direction == "in",
                )
            ).all()
            if len(inbound) != 1:
                return None, []
            replies = session.execute(
                select(Message.status, Message.provider_id)
                .where(Message.reply_to_id == inbound[0].id)
                .order_by(Message.id)
            ).all()
            return inbound[0].status, [tuple(r) for r in replies]

    def close(self) -> None:
        self.db.dispose()


def check(replies: list[tuple], sent: list[Sent]) -> str | None:
    """None when every reply stored for the message reached Twilio exactly once, each with all
    its parts, in order, and nothing else reached this worker in the turn."""
    if not replies:
        return "no reply"
    if any(status != "sent" for status, _ in replies):
        return "reply not sent: " + ",".join(sorted({s for s, _ in replies if s != "sent"}))
    position = 0
    for _, first_sid in replies:
        if position >= len(sent) or sent[position].sid != first_sid:
            return "outbound calls do not match the stored replies"
        match = PART.match(sent[position].body)
        parts = int(match.group(2)) if match else 1
        for k in range(1, parts):
            if position + k >= len(sent) or not sent[position + k].body.startswith(
                f"({k + 1}/{parts}) "
            ):
                return "SMS part missing"
        position += parts
    if position != len(sent):
        return f"{len(sent) - position} outbound calls more than the replies"
    return None


def conversation(base: str, outbox: Outbox, store: Store, worker: Worker) -> list[Turn]:
    """One worker: each message signed and posted, then wait until its whole reply is out."""
    turns = []
    ours = WHATSAPP_SENDER if worker.channel == "whatsapp" else SMS_NUMBER
    for t, text in enumerate(worker.script):
        sid = f"SM{uuid.uuid4().hex}"
        params = {"AccountSid": SID, "MessageSid": sid, "SmsSid": sid, "From": worker.address,
                  "To": ours, "Body": text, "NumMedia": "0"}  # fmt: skip
        seen = outbox.count(worker.address)
        t0 = time.monotonic()
        status = signed_post(base, params)
        turn = Turn(worker.index, t, worker.channel, status, time.monotonic() - t0)
        turns.append(turn)
        if status != 200:
            turn.problem = f"webhook answered {status}"
            continue
        deadline = t0 + TURN_TIMEOUT
        checked = seen
        while True:
            # Wake up when something reaches this worker; look at the store then (and now and
            # then without, to notice a message that got no reply at all).
            with outbox.arrived:
                outbox.arrived.wait_for(
                    lambda n=checked: len(outbox.by_address[worker.address]) > n,
                    timeout=0.02 if checked > seen else 1.0,
                )
                checked = len(outbox.by_address[worker.address])
            inbound, replies = store.state(worker.channel, sid)
            if inbound == "done" and all(status != "queued" for status, _ in replies):
                break  # replies are stored with "done" in one transaction: this is all of them
            if inbound == "caseworker" or time.monotonic() > deadline:
                break
        turn.sent = outbox.since(worker.address, seen)
        if inbound != "done":
            turn.problem = f"not answered ({inbound or 'not stored'})"
            continue
        turn.problem = check(replies, turn.sent)
        if turn.sent:
            turn.first = turn.sent[0].at - t0
            turn.whole = turn.sent[-1].at - t0
    return turns


@dataclasses.dataclass
class Run:
    label: str
    messages: int
    answered: int  # answered exactly once
    wall: float
    ack: list[float]
    reply: list[float]
    whole: list[float]
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.answered / self.wall


# The sender's rates of a short code and a business WhatsApp sender: the bench measures our
# path, not a long code's one SMS a second (bot/channels/ratelimit.py).
FAST_SENDERS = {
    "HELPLINE_RATE_TWILIO_SMS_PER_S": "1000", "HELPLINE_RATE_TWILIO_SMS_BURST": "1000",
    "HELPLINE_RATE_TWILIO_WHATSAPP_PAIR_PER_S": "100",
    "HELPLINE_RATE_TWILIO_WHATSAPP_PAIR_BURST": "100",
}  # fmt: skip


def twilio_env(outbox: Outbox) -> dict[str, str]:
    return {
        **FAST_SENDERS,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_SMS_NUMBER": SMS_NUMBER,
        "TWILIO_WHATSAPP_SENDER": WHATSAPP_SENDER,
        "TWILIO_API_BASE": outbox.url,
        "HELPLINE_PUBLIC_URL": PUBLIC,
    }


def warm_up(base: str, outbox: Outbox, store: Store) -> None:
    """One message on each channel first (not counted): models, connections, caches."""
    for channel in ("sms", "whatsapp"):
        number = "+601600000" + ("1" if channel == "sms" else "2")
        conversation(base, outbox, store, Worker(0, number, channel, ["hello"]))


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def channel_runs(tmp: Path, n_workers: int, turns: int, rounds: int, rest: bool = True,
                 processes: int = 1):  # fmt: skip
    """Ours through the Twilio webhook (and, with ``rest``, the same conversations through our
    REST channel on the same server); the runs, the server's log and every number used. With
    ``processes`` > 1: `helpline run --workers N` on PostgreSQL and Redis (the scaled mode)."""
    outbox = Outbox()
    env, database_url, drop = twilio_env(outbox), None, None
    if processes > 1:
        database_url, drop = scaled_backends(env)
    server, stop = start(tmp, env, database_url=database_url,
                         extra_args=("--workers", str(processes)))  # fmt: skip
    label = (
        "ours: Twilio webhook (SMS + WhatsApp), queue, fake Twilio API, one process, SQLite"
        if processes == 1
        else f"ours: the same, {processes} processes (--workers {processes}), PostgreSQL + Redis"
    )
    store = Store(server.database_url)
    numbers = ["+6016000001", "+6016000002"]
    try:
        warm_up(server.base, outbox, store)
        before = len(outbox.requests)
        turns_done, wall = [], 0.0
        for r in range(rounds):
            progress(f"ours through the Twilio webhook: round {r + 1} of {rounds}")
            crew = workers(n_workers, turns, r)
            numbers += [w.number for w in crew]
            done, w = concurrently(lambda wk: conversation(server.base, outbox, store, wk), crew)
            turns_done += done
            wall += w
        outbound_total = len(outbox.requests) - before
        ok = [t for t in turns_done if t.problem is None]
        problems = [f"worker {t.worker} ({t.channel}) turn {t.turn}: {t.problem}"
                    for t in turns_done if t.problem]  # fmt: skip
        counted = sum(len(t.sent) for t in turns_done)
        if counted != outbound_total:
            problems.append(f"{outbound_total - counted} outbound calls outside any turn")
        runs = [
            Run(
                label,
                len(turns_done), len(ok), wall,
                [t.ack for t in turns_done], [t.first for t in ok], [t.whole for t in ok],
                problems,
            )
        ]  # fmt: skip
        if rest:
            server.say("warm-up", "hello")
            latencies, wall = [], 0.0
            for r in range(rounds):
                progress(f"ours through REST: round {r + 1} of {rounds}")
                ls, w = drive(server.base, [our_script(i + r)[:turns] for i in range(n_workers)])
                latencies += ls
                wall += w
            runs.append(rest_run("ours: REST channel, same server and conversations",
                                 latencies, wall))  # fmt: skip
    finally:
        store.close()
        stop()
        outbox.close()
        if drop is not None:
            drop()
    return runs, server.log.read_text(errors="replace"), numbers


def scaled_backends(env: dict) -> tuple[str, object]:
    """A new PostgreSQL database and a clean Redis database for the scaled run; sets their URLs
    in ``env``. Returns the database URL and a function that drops it."""
    import redis

    from tests.store_backends import postgres_database

    url, drop = postgres_database()
    redis_url = "redis://127.0.0.1:6379/13"
    redis.Redis.from_url(redis_url).flushdb()
    env.update({"HELPLINE_DATABASE_URL": url, "HELPLINE_REDIS_URL": redis_url})
    return url, drop


def rest_run(label: str, latencies: list[float], wall: float) -> Run:
    return Run(label, len(latencies), len(latencies), wall, latencies, latencies, latencies)


def leaked(log: str, numbers: list[str]) -> int:
    """How many of the workers' phone numbers the log contains (in any form: +, %2B, bare)."""
    return sum(1 for number in numbers if number.lstrip("+") in log)


def ms(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    p50, p95 = p50_p95(values)
    return f"{p50 * 1000:.0f} / {p95 * 1000:.0f}"


def table(runs: list[Run], n_workers: int, turns: int, rounds: int, note: str) -> str:
    lines = [
        f"Measured {dt.date.today().isoformat()} on {machine()}; {n_workers} concurrent workers"
        f" x {turns} messages x {rounds} rounds each{note}.",
        "",
        "| server, channel | messages | answered once | messages/s | ack p50 / p95 ms"
        " | reply p50 / p95 ms | whole reply p50 / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        rest = run.ack is run.reply
        lines.append(
            f"| {run.label} | {run.messages} | {run.answered} | {run.rate:.1f}"
            f" | {'(the reply)' if rest else ms(run.ack)} | {ms(run.reply)}"
            f" | {'(the reply)' if rest else ms(run.whole)} |"
        )
    stock = next((r for r in runs if r.label.startswith("stock")), None)
    for ours in runs:
        if stock is None or not ours.reply or "Twilio" not in ours.label and (
            "the same," not in ours.label
        ):
            continue
        ratio = [
            f"{ours.rate / stock.rate:.2f}",
            *(f"{p50_p95(ours.reply)[k] / p50_p95(stock.reply)[k]:.2f}" for k in (0, 1)),
        ]
        which = "one process" if "one process" in ours.label else "two processes"
        lines.append(
            f"| ratio ours (Twilio, {which}) / stock (REST) | | | {ratio[0]} | |"
            f" {ratio[1]} / {ratio[2]} | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=16, help="concurrent workers")
    ap.add_argument("--turns", type=int, default=6, help="messages per conversation (at most 6)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of conversations per server")
    ap.add_argument("--no-stock", action="store_true", help="without stock Rasa")
    ap.add_argument("--no-rest", action="store_true", help="without ours through REST")
    ap.add_argument("--no-scaled", action="store_true",
                    help="without the two-process run (PostgreSQL and Redis)")  # fmt: skip
    ap.add_argument("--write", help="replace the channel table in this markdown file")
    args = ap.parse_args(argv)
    turns = max(1, min(args.turns, len(our_script(0))))
    from bot import cli

    cli.train(models_dir=ROOT / "models")
    tmp = Path(tempfile.mkdtemp(prefix="bench-channels-"))
    note = ""
    t_start = time.perf_counter()
    try:
        (tmp / "ours").mkdir()
        runs, log, numbers = channel_runs(
            tmp / "ours", args.workers, turns, args.rounds, rest=not args.no_rest
        )
        if not args.no_scaled:
            (tmp / "scaled").mkdir()
            scaled, scaled_log, scaled_numbers = channel_runs(
                tmp / "scaled", args.workers, turns, args.rounds, rest=False, processes=2
            )
            runs[1:1] = scaled
            log += scaled_log
            numbers += scaled_numbers
        if not args.no_stock:
            stock_base, stop_stock, stock_train = stock_server(tmp)
            try:
                call(f"{stock_base}/webhooks/rest/webhook", {"sender": "warm-up", "message": "hi"})
                latencies, wall = [], 0.0
                for r in range(args.rounds):
                    progress(f"stock through REST: round {r + 1} of {args.rounds}")
                    scripts = [stock_script(i + r)[:turns] for i in range(args.workers)]
                    ls, w = drive(stock_base, scripts)
                    latencies += ls
                    wall += w
            finally:
                stop_stock()
            runs.append(rest_run("stock `rasa init`: REST channel (DIET + TED, its own data)",
                                 latencies, wall))  # fmt: skip
            note = f"; stock training took {stock_train:.0f} s"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = table(runs, args.workers, turns, args.rounds, note)
    print(text)
    queued = [r for r in runs if r.ack is not r.reply]  # through the webhook and the queue
    leaks = leaked(log, numbers)
    for ours in queued:
        print(
            f"\nchecked ({ours.label}): {ours.answered} of {ours.messages} messages answered"
            f" exactly once (each stored reply reached the fake Twilio once, all its parts,"
            f" nothing more); {ours.messages - ours.answered} not",
            flush=True,
        )
        for problem in ours.problems[:20]:
            print("  " + problem)
    print(f"phone numbers in the servers' logs: {leaks};"
          f" run took {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    if args.write:
        write_section(args.write, "bench-channels", "## Channel throughput (`make bench`)", text)
    return 0 if not any(r.problems for r in queued) and not leaks else 1


if __name__ == "__main__":
    raise SystemExit(main())
