"""Transactions the channels' queue itself makes per message (issue 13: "fewer commits").

    python tests/bench/queue_commits.py [--tree PATH] [--messages 50]

Runs, from the checkout ``--tree`` (default this one; another, such as a `git worktree` of the
previous release, runs with this checkout's environment), the real ``Inbox`` on a SQLite file:
``--messages`` messages from as many workers, each accepted as a webhook would, then processed
with a stand-in for Rasa that answers one reply, and delivered to a fake Telegram API. Counts
the transactions that committed (SQLAlchemy's ``commit`` events on the store's engine), per
message. Rasa's tracker
store and the actions are not in this count: only the queue's own work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r'''
import asyncio, os, sys
from sqlalchemy import event
sys.path.insert(0, os.getcwd())
from bot import settings as settings_module
from bot.channels import config as channel_config
from bot.channels.inbox import Inbound, Inbox
from bot.channels.telegram import TelegramSender
from bot.store import Database
sys.path.insert(0, sys.argv[3])
from tests.fake_providers import FakeTelegram

telegram = FakeTelegram()
app = settings_module.load({"HELPLINE_ENV": "development",
                            "HELPLINE_DATABASE_URL": f"sqlite:///{sys.argv[1]}/q.db"})
db = Database(app.database_url, app.encryption_keys)
db.upgrade()
settings = channel_config.load({"TELEGRAM_BOT_TOKEN": "123:abc",
    "TELEGRAM_WEBHOOK_SECRET": "s3cret", "TELEGRAM_API_BASE": telegram.url})
box = Inbox(db, app.pseudonym_key, settings,
            senders={"telegram": TelegramSender("123:abc", telegram.url)})

async def rasa(message):
    await message.output_channel.send_text_message(message.sender_id, "re: " + message.text)
box.on_new_message = rasa
counts = {"commits": 0}
event.listen(db.engine, "commit", lambda conn: counts.__setitem__("commits", counts["commits"] + 1))
n = int(sys.argv[2])

async def main():
    for i in range(n):
        cid = box.accept(Inbound("telegram", str(1000 + i), str(i), "hello"))
        await box.process(cid)
asyncio.run(main())
sent = len(telegram.sent("sendMessage"))
telegram.close()
print(f"{counts['commits'] / n:.1f} {sent}")
'''


def measure(tree: Path, messages: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", PROBE, tmp, str(messages), str(ROOT)],
            cwd=tree, capture_output=True, text=True, check=True,
            env={**os.environ, "HELPLINE_ENV": "development"},
        )  # fmt: skip
    commits, sent = out.stdout.split()[-2:]
    return float(commits), int(sent)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", help="checkouts to compare (default: this one)")
    ap.add_argument("--messages", type=int, default=50)
    args = ap.parse_args(argv)
    print("| checkout | transactions per message | replies sent |")
    print("|---|---:|---:|")
    for tree in args.tree or [str(ROOT)]:
        commits, sent = measure(Path(tree), args.messages)
        print(f"| {tree} | {commits} | {sent} of {args.messages} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
