"""SQL statements a message costs through the Twilio webhook, whole server (issue 13: "fewer
commits per message", "no blocking database call on the event loop"), by statement and by the
code that made it.

    python tests/bench/statements_per_turn.py [--tree PATH ...] [--workers 8] [--top 25]

For each checkout given with ``--tree`` (default this one; another, such as a `git worktree`
of the previous release, runs with this checkout's environment and its own code and model),
starts `helpline run` (development, SQLite, the Twilio channel against the fake Twilio API of
`make bench`) with a listener on every SQLAlchemy engine of the process (the case store,
Rasa's tracker store), warms it up with two conversations, then runs ``--workers`` workers'
six-message conversations at once (`tests/bench/bench_channels.py`'s) and prints the
statements executed per message answered: in all, by kind of statement, and by the three
innermost frames of our code (or Rasa's tracker store) that made them. BEGIN and COMMIT are
not statements here (the DB-API driver issues them).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs inside the server: the listener, then `helpline run` (argv after the output file).
SERVE = r'''
import collections, json, os, signal, sys, traceback
sys.path.insert(0, os.getcwd())
from sqlalchemy import event
from sqlalchemy.engine import Engine
kinds, callers = collections.Counter(), collections.Counter()
ours = ("/bot/", "/actions/", "rasa/core/tracker_store")
def count(conn, cursor, statement, params, context, executemany):
    kind = " ".join(statement.split()[:4])[:60]
    kinds[kind] += 1
    frames = [f for f in traceback.extract_stack(limit=40) if any(o in f.filename for o in ours)]
    where = " < ".join(f"{os.path.basename(f.filename)}:{f.name}" for f in reversed(frames[-3:]))
    callers[kind[:40] + " | " + where] += 1
event.listen(Engine, "before_cursor_execute", count)
out = sys.argv[1]
def dump(*_):
    with open(out + ".tmp", "w") as f:
        json.dump({"kinds": kinds, "callers": callers}, f)
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, dump)
from bot.cli import main
sys.exit(main(sys.argv[2:]))
'''


def snapshot(process: subprocess.Popen, path: Path) -> dict:
    import json

    path.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the server did not write its counts")
        time.sleep(0.1)
    return json.loads(path.read_text())


def measure(tree: Path, workers_n: int) -> tuple[int, dict, dict]:
    from tests.bench.bench_channels import Outbox, Store, conversation, twilio_env, workers
    from tests.live_server import free_port

    tmp = Path(tempfile.mkdtemp(prefix="statements-"))
    outbox = Outbox()
    port = free_port()
    counts = tmp / "counts.json"
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(counts), "run", "--port", str(port),
         "--actions-port", str(free_port()), "--dashboard-port", "0"],
        cwd=tree, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RASA_TELEMETRY_ENABLED": "false",
             "HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp}/cases.db",
             **twilio_env(outbox)},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    store = None
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(f"{base}/", timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (tmp / "server.log").read_text()
                    raise SystemExit("server did not start:\n" + log_text) from None
                time.sleep(1)
        store = Store(f"sqlite:///{tmp}/cases.db")
        for worker in workers(2, 1, 99):
            conversation(base, outbox, store, worker)  # warm-up: first loads, first queries
        before = snapshot(process, counts)
        answered: list = []
        threads = [
            threading.Thread(
                target=lambda w=w: answered.extend(conversation(base, outbox, store, w))
            )
            for w in workers(workers_n, 6, 5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(2)  # the last replies' bookkeeping
        after = snapshot(process, counts)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        if store is not None:
            store.close()
        outbox.close()
    problems = [t for t in answered if t.problem]
    if problems:
        raise SystemExit(f"{len(problems)} messages not answered once: {problems[0].problem}")
    diff = {
        part: collections.Counter(
            {k: v - before[part].get(k, 0) for k, v in after[part].items()}
        )
        for part in ("kinds", "callers")
    }
    return len(answered), diff["kinds"], diff["callers"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", help="a checkout to run (repeatable)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HELPLINE_ENV", "development")
    rows = []
    for tree in args.tree or [str(ROOT)]:
        n, kinds, callers = measure(Path(tree), args.workers)
        total = sum(kinds.values())
        rows.append((tree, n, total))
        print(f"\n{tree}: {n} messages, {total / n:.2f} statements a message")
        print("| statement | a message |\n|---|---:|")
        for kind, count in kinds.most_common(args.top):
            if count:
                print(f"| `{kind}` | {count / n:.2f} |")
        print("\n| statement, made by | a message |\n|---|---:|")
        for where, count in callers.most_common(args.top):
            if count:
                print(f"| `{where}` | {count / n:.2f} |")
    print("\n| checkout | messages | statements a message |\n|---|---:|---:|")
    for tree, n, total in rows:
        print(f"| {tree} | {n} | {total / n:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
