"""The channels' queue alone under concurrent workers: messages a second and CPU per message.

    python tests/bench/queue_throughput.py [--workers 16] [--turns 6] [--repeat 3] [--postgres]

The real ``Inbox`` on a SQLite file (``make run``'s layout), a stand-in for Rasa that answers
one reply at once, the real Twilio sender against the fake Twilio API on loopback. Each of
``--workers`` workers has its own phone number and sends ``--turns`` messages, each accepted as
the webhook accepts it and scheduled, and waits for its reply before writing again (as
`make bench`'s workers do). Printed: messages a second and CPU milliseconds per message (this
process: the queue, the sender and the fake), median of ``--repeat`` runs, with the SQLite
transactions taking turns (``Database.session``) and, in the same run, without (SQLite's own
busy handler alone, as before); with ``--postgres``, also on a new PostgreSQL database (the
scaled layout's store, where transactions need no turns).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HELPLINE_ENV", "development")


def run_once(workers: int, turns: int, turns_on: bool, tag: str, url: str | None = None,
             concurrency: int = 4) -> tuple[float, float]:  # fmt: skip
    from bot import settings as settings_module
    from bot.channels import config as channel_config
    from bot.channels.inbox import Inbound, Inbox, QueueOptions
    from bot.channels.twilio import TwilioSender
    from bot.store import Database
    from tests.fake_providers import FakeTwilio

    class Counting(FakeTwilio):
        """The fake Twilio, counting replies per number and waking the worker waiting for one
        (no polling: the workers cost the process nothing while they wait)."""

        def __init__(self) -> None:
            self.count: dict[str, int] = {}
            self.waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
            super().__init__()

        def answer(self, path: str, params: dict) -> tuple[int, dict]:
            answer = super().answer(path, params)
            number = params.get("To", "")
            self.count[number] = self.count.get(number, 0) + 1
            if number in self.waiting:
                loop, event = self.waiting[number]
                loop.call_soon_threadsafe(event.set)
            return answer

    twilio = Counting()
    with tempfile.TemporaryDirectory() as tmp:
        app = settings_module.load(
            {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": url or f"sqlite:///{tmp}/q.db"}
        )
        db = Database(app.database_url, app.encryption_keys)
        db.upgrade()
        if not turns_on:
            db._turn = None  # the baseline: SQLite's busy handler alone
        settings = channel_config.load({
            "TWILIO_ACCOUNT_SID": "AC" + "5" * 32, "TWILIO_AUTH_TOKEN": "bench-token",
            "TWILIO_SMS_NUMBER": "+15550001111", "TWILIO_API_BASE": twilio.url,
        })  # fmt: skip
        box = Inbox(db, app.pseudonym_key, settings, senders={"sms": TwilioSender(settings)},
                    options=QueueOptions(concurrency=concurrency))  # fmt: skip

        async def rasa(message) -> None:
            await message.output_channel.send_text_message(message.sender_id, "ok: " + message.text)

        box.on_new_message = rasa

        async def worker(w: int) -> None:
            number = f"+6019{w:05d}"
            event = asyncio.Event()
            twilio.waiting[number] = (asyncio.get_running_loop(), event)
            for t in range(turns):
                inbound = Inbound("sms", number, f"SM{tag}{w}x{t}", "my salary is not paid")
                contact_id = await asyncio.to_thread(box.accept, inbound)
                box.schedule(contact_id)
                while twilio.count.get(number, 0) < t + 1:
                    event.clear()
                    if twilio.count.get(number, 0) < t + 1:
                        await asyncio.wait_for(event.wait(), timeout=60)

        async def main() -> tuple[float, float]:
            box.start(interval=1.0)
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(workers)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            await box.stop(grace=1.0)
            return workers * turns / wall, 1000 * cpu / (workers * turns)

        try:
            return asyncio.run(main())
        finally:
            db.dispose()
            twilio.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", action="store_true", help="also on PostgreSQL (127.0.0.1)")
    ap.add_argument("--concurrency", type=int, default=4, help="HELPLINE_QUEUE_CONCURRENCY")
    args = ap.parse_args(argv)
    print(f"{args.workers} workers x {args.turns} messages, {args.concurrency} processed at once,"
          f" median of {args.repeat} runs\n")  # fmt: skip
    print("| store, transactions | messages/s | CPU ms a message (this process) |\n|---|---:|---:|")
    for label, on in (("SQLite, taking turns in the process (now)", True),
                      ("SQLite, its busy handler alone", False)):  # fmt: skip
        runs = [run_once(args.workers, args.turns, on, f"{on:d}{k}", concurrency=args.concurrency)
                for k in range(args.repeat)]  # fmt: skip
        print(f"| {label} | {statistics.median(r[0] for r in runs):.1f}"
              f" | {statistics.median(r[1] for r in runs):.1f} |")  # fmt: skip
    if args.postgres:
        from tests.store_backends import postgres_database

        runs = []
        for k in range(args.repeat):
            url, drop = postgres_database()
            try:
                runs.append(run_once(args.workers, args.turns, True, f"pg{k}", url,
                                     concurrency=args.concurrency))  # fmt: skip
            finally:
                drop()
        print(f"| PostgreSQL (no turns needed) | {statistics.median(r[0] for r in runs):.1f}"
              f" | {statistics.median(r[1] for r in runs):.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
