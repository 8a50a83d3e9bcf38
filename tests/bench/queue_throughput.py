"""The channels' queue alone under concurrent workers: messages a second and CPU per message.

    python tests/bench/queue_throughput.py [--workers 16] [--turns 6] [--repeat 3]

The real ``Inbox`` on a SQLite file (``make run``'s layout), a stand-in for Rasa that answers
one reply at once, the real Twilio sender against the fake Twilio API on loopback. Each of
``--workers`` workers has its own phone number and sends ``--turns`` messages, each accepted as
the webhook accepts it and scheduled, and waits for its reply before writing again (as
`make bench`'s workers do). Printed: messages a second and CPU milliseconds per message (this
process: the queue, the sender and the fake), median of ``--repeat`` runs, with the SQLite
transactions taking turns (``Database.session``) and, in the same run, without (SQLite's own
busy handler alone, as before).
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


def run_once(workers: int, turns: int, turns_on: bool, tag: str) -> tuple[float, float]:
    from bot import settings as settings_module
    from bot.channels import config as channel_config
    from bot.channels.inbox import Inbound, Inbox
    from bot.channels.twilio import TwilioSender
    from bot.store import Database
    from tests.fake_providers import FakeTwilio

    twilio = FakeTwilio()
    with tempfile.TemporaryDirectory() as tmp:
        app = settings_module.load(
            {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp}/q.db"}
        )
        db = Database(app.database_url, app.encryption_keys)
        db.upgrade()
        if not turns_on:
            db._turn = None  # the baseline: SQLite's busy handler alone
        settings = channel_config.load({
            "TWILIO_ACCOUNT_SID": "AC" + "5" * 32, "TWILIO_AUTH_TOKEN": "bench-token",
            "TWILIO_SMS_NUMBER": "+15550001111", "TWILIO_API_BASE": twilio.url,
        })  # fmt: skip
        box = Inbox(db, app.pseudonym_key, settings, senders={"sms": TwilioSender(settings)})

        async def rasa(message) -> None:
            await message.output_channel.send_text_message(message.sender_id, "ok: " + message.text)

        box.on_new_message = rasa

        def replies(number: str) -> int:
            return sum(1 for r in list(twilio.requests) if r["params"].get("To") == number)

        async def worker(w: int) -> None:
            number = f"+6019{w:05d}"
            for t in range(turns):
                inbound = Inbound("sms", number, f"SM{tag}{w}x{t}", "my salary is not paid")
                contact_id = await asyncio.to_thread(box.accept, inbound)
                box.schedule(contact_id)
                while replies(number) < t + 1:
                    await asyncio.sleep(0.005)

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
    args = ap.parse_args(argv)
    print(f"{args.workers} workers x {args.turns} messages, median of {args.repeat} runs\n")
    print("| SQLite transactions | messages/s | CPU ms per message |\n|---|---:|---:|")
    for label, on in (("take turns in the process (now)", True), ("busy handler alone", False)):
        runs = [run_once(args.workers, args.turns, on, f"{on:d}{k}") for k in range(args.repeat)]
        print(f"| {label} | {statistics.median(r[0] for r in runs):.1f}"
              f" | {statistics.median(r[1] for r in runs):.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
