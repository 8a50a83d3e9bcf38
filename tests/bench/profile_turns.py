"""Where a turn's time goes: py-spy on a running `helpline run` under the Twilio load of
`make bench`, for any checkout (so the previous release can be profiled in the same run).

    python tests/bench/profile_turns.py [--tree PATH] [--seconds 40] [--workers 16]
        [--label ours] [--raw out.txt]

Starts `helpline run` from ``--tree`` (default: this checkout; another one, such as a
`git worktree` of the previous release, runs with this checkout's virtual environment) in
development with a SQLite store and the Twilio channel against the fake Twilio API, warms it up,
then keeps ``--workers`` workers writing through the signed webhook while py-spy samples the
server and its children (``--subprocesses``: the action server, when there is one) for
``--seconds``. Prints messages answered a second during the sampling and the share of samples
(of the thread holding the GIL, idle waits excluded) spent in each of the parts
issue 13 names: the action-response schema check, the per-message health probe, the action call
over HTTP, the actions themselves, Rasa's NLU, its policies, the tracker store, the case store's
commits and the channels' queue. Only the thread holding Python's GIL is sampled (``--gil``):
the shares are of the CPU time Python spends, not of threads waiting (a thread waiting for
SQLite's lock inside its C code would otherwise count as busy).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HELPLINE_ENV", "development")  # the development keys, as the server

from tests.bench.bench_channels import (  # noqa: E402
    Outbox,
    Store,
    conversation,
    twilio_env,
    workers,
)
from tests.live_server import free_port  # noqa: E402

# (label, a regular expression matched against a frame "function (file:line)"). Each busy
# sample counts for the part of its innermost frame that matches one (so a database commit made
# by an action counts as a commit, not as the action): where the CPU is, by subsystem.
PARTS = [
    ("action answer schema check (jsonschema)", r"jsonschema/"),
    ("health probe before each turn", r"_actions_up"),
    ("database: connect and per-connection pragmas", r"_sqlite_pragmas|\bconnect \(sqlalchemy"
     r"|do_close \(sqlalchemy|pool/"),
    ("database: commits", r"do_commit \(sqlalchemy"),
    ("database: queries and the ORM", r"sqlalchemy/|sqlite3|psycopg2"),
    ("encryption (Fernet, HMAC)", r"cryptography/|hmac\.py|bot/store/crypto\.py"),
    ("HTTP client (action server, provider APIs)", r"aiohttp/|rasa/utils/endpoints\.py|requests/"
     r"|urllib3/|http/client\.py|httpx/|telegram/"),
    ("Rasa NLU (our components, scikit-learn)", r"rasa/nlu/|/nlu/|sklearn/|scipy/|numpy/"),
    ("Rasa policies", r"rasa/core/policies/"),
    ("Rasa trackers and events (copy, serialise)", r"rasa/shared/core/(trackers|events)\.py"
     r"|rasa/core/tracker_store\.py|json/"),
    ("our actions and rasa_sdk", r"rasa_sdk/|/actions/"),
    ("Sanic and the HTTP server", r"sanic/|httptools"),
    ("channels' queue and channels (our code)", r"bot/channels/"),
]
# A thread's top frame when it waits (py-spy counts a thread blocked in C code as running).
IDLE = re.compile(
    r"\b(select|epoll|poll|_run_once \(asyncio|wait \(threading|sleep)\b"
    r"|^_worker \(concurrent/futures/thread|^run \(threading\.py|^serve \(sanic/server/runners"
    r"|^run_forever \(asyncio|^_try_wait \(subprocess"
)


def start_server(tree: Path, tmp: Path, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(port), "--actions-port",
         str(free_port()), "--dashboard-port", "0"],
        cwd=tree, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RASA_TELEMETRY_ENABLED": "false",
             "HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp}/cases.db",
             **env},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"{base}/", timeout=5).read()
            return process, base
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (tmp / "server.log").read_text()
                raise SystemExit("server did not start:\n" + log) from None
            time.sleep(1)


def summarise(raw: str) -> tuple[int, list[tuple[str, float]]]:
    """py-spy's raw (collapsed) stacks: busy samples, and each part's share of them (the part
    of the innermost frame that matches one; "other" for the rest)."""
    busy = 0
    counts: collections.Counter = collections.Counter()
    patterns = [(label, re.compile(p)) for label, p in PARTS]
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        if frames and IDLE.search(frames[-1]):
            continue  # a thread waiting: not time a turn spends
        busy += int(n)
        part = "other (Rasa's processor, asyncio, Python)"
        for frame in reversed(frames):
            found = next((label for label, pattern in patterns if pattern.search(frame)), None)
            if found:
                part = found
                break
        counts[part] += int(n)
    labels = [label for label, _ in PARTS] + ["other (Rasa's processor, asyncio, Python)"]
    return busy, [(label, counts[label] / busy if busy else 0.0) for label in labels]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(ROOT), help="the checkout to run the server from")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--raw", help="keep py-spy's raw stacks in this file")
    ap.add_argument("--all-threads", action="store_true",
                    help="every thread on the CPU, not only the one holding the GIL (C code that"
                    " lets the GIL go, such as SQLite's or hashing, counts too)")  # fmt: skip
    args = ap.parse_args(argv)
    beside = Path(sys.executable).parent / "py-spy"  # the virtual environment's
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy is not installed (uv sync installs it with the dev group)")
    tmp = Path(tempfile.mkdtemp(prefix="profile-turns-"))
    outbox = Outbox()
    process, base = start_server(Path(args.tree), tmp, twilio_env(outbox))
    store = Store(f"sqlite:///{tmp}/cases.db")
    stop = threading.Event()
    answered = []

    def keep_writing(index: int) -> None:
        round_ = 0
        while not stop.is_set():
            round_ += 1
            crew = workers(args.workers, 6, 10 + round_)
            turns = conversation(base, outbox, store, crew[index])
            answered.extend(t for t in turns if t.problem is None)

    try:
        for w in workers(2, 1, 99):
            conversation(base, outbox, store, w)  # warm-up
        threads = [threading.Thread(target=keep_writing, args=(i,), daemon=True)
                   for i in range(args.workers)]  # fmt: skip
        for thread in threads:
            thread.start()
        time.sleep(5)
        raw_file = Path(args.raw) if args.raw else tmp / "raw.txt"
        before = len(answered)
        started = time.monotonic()
        subprocess.run(
            [py_spy, "record", "--pid", str(process.pid), "--subprocesses", "--duration",
             str(args.seconds), "--rate", "50", "--format", "raw", "--output", str(raw_file),
             "--nonblocking", *(() if args.all_threads else ("--gil",))],
            check=True, capture_output=True,
        )  # fmt: skip
        rate = (len(answered) - before) / (time.monotonic() - started)
        stop.set()
        busy, shares = summarise(raw_file.read_text())
        print(f"\n{args.label}: {rate:.1f} messages answered a second while sampled,"
              f" {busy} busy samples")
        print("| part | share of busy samples |\n|---|---:|")
        for label, share in shares:
            print(f"| {label} | {share * 100:.1f} % |")
    finally:
        stop.set()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        store.close()
        outbox.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
