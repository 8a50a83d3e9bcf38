"""`make bench`: concurrent conversations through the REST channel, ours next to stock Rasa.

Starts `helpline run` (our model, rules and form, the action server, the case store), once with
our SQLite tracker store and once with trackers in memory, and, in the same run on the same
machine, a stock Rasa project as `rasa init` makes it (its config with DIET, TED and the
memoization and rule policies, its own small data, no action server, trackers in memory), then
sends the
same number of concurrent conversations to each through `POST /webhooks/rest/webhook`, and prints
messages per second and the p50/p95 latency of a reply. Ours runs a multi-turn helpline
conversation (rights question, country, source, menu, a case status check) in all 8 languages;
stock runs its own mood-bot conversation. Figures: medians over the run; machines are noisy.

    python tests/bench/bench_dialogue.py [--workers 8] [--turns 6] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.live_server import call, free_port, start  # noqa: E402

LANGUAGES = ["en", "bn", "ne", "my", "vi", "id", "ms", "th"]


def heldout(language: str, intent: str) -> str:
    with open(ROOT / "tests" / "data" / "heldout" / f"{language}.tsv", encoding="utf-8") as f:
        return next(r[2] for r in csv.reader(f, delimiter="\t") if r[0] == intent)


def our_script(i: int) -> list[str]:
    lang = LANGUAGES[i % len(LANGUAGES)]
    return [heldout(lang, "wages"), "1", "2", "0", "3", heldout(lang, "thank")]


def stock_script(i: int) -> list[str]:
    return ["hello", "I am sad", "yes", "great", "bye", "hi"]


def concurrently(conversation, items: list) -> tuple[list, float]:
    """Runs ``conversation(item)`` for every item at once (one thread each); what they return,
    concatenated, and the wall time."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(items)) as pool:
        results = [r for rs in pool.map(conversation, items) for r in rs]
    return results, time.perf_counter() - t0


def drive(base: str, scripts: list[list[str]]) -> tuple[list[float], float]:
    """Runs the conversations concurrently (one thread each); latency of every message."""

    def conversation(script: list[str]) -> list[float]:
        sender = f"bench-{uuid.uuid4().hex[:8]}"
        times = []
        for text in script:
            t0 = time.perf_counter()
            call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": text}, timeout=120)
            times.append(time.perf_counter() - t0)
        return times

    return concurrently(conversation, scripts)


def stock_server(tmp: Path):
    project = tmp / "stock"
    project.mkdir()
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3"}
    print("training stock Rasa (rasa init) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rasa", "init", "--no-prompt", "--init-dir", str(project)],
        check=True, capture_output=True, env=env, timeout=1800,
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    port = free_port()
    log = open(tmp / "stock.log", "wb")  # noqa: SIM115 - closed in stop()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasa", "run", "--enable-api", "--port", str(port),
         "--interface", "127.0.0.1"],
        cwd=project, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if call(f"{base}/status", timeout=5).get("model_file"):
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                "stock Rasa did not start:\n" + (tmp / "stock.log").read_text()[-2000:]
            )
        time.sleep(1)

    def stop() -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()

    return base, stop, train_s


def p50_p95(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=20)[18]


def row(name: str, latencies: list[float], wall: float) -> str:
    p50, p95 = p50_p95(latencies)
    return (
        f"| {name} | {len(latencies)} | {len(latencies) / wall:.1f} | "
        f"{p50 * 1000:.0f} | {p95 * 1000:.0f} |"
    )


def machine() -> str:
    """The machine a table was measured on, for its "Measured ..." line."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores"
        f" ({platform.python_implementation()} {platform.python_version()})"
    )


def write_section(path: str | Path, key: str, heading: str, table: str) -> None:
    """Replaces the text between ``<!-- key:begin -->`` and ``<!-- key:end -->`` in a markdown
    file with ``table``; a file without them gets ``heading`` and the block at its end."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += f"\n{heading}\n\n{block}\n"
    path.write_text(text, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=16, help="concurrent conversations")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of conversations per server")
    ap.add_argument("--write", help="replace the dialogue table in this markdown file")
    args = ap.parse_args()
    from bot import cli

    cli.train(models_dir=ROOT / "models")
    tmp = Path(tempfile.mkdtemp(prefix="bench-dialogue-"))
    results = []
    try:
        for label, sql in (
            ("ours: rules + form + action server + case store, SQLite tracker store", True),
            ("ours, trackers in memory (as stock keeps them)", False),
        ):
            run_dir = tmp / ("sql" if sql else "memory")
            run_dir.mkdir()
            ours, stop_ours = start(run_dir, sql_tracker_store=sql)
            ours.say("warm-up", "hello")
            lat, wall = [], 0.0
            for r in range(args.rounds):
                ls, w = drive(ours.base, [our_script(i + r) for i in range(args.workers)])
                lat += ls
                wall += w
            stop_ours()
            results.append(row(label, lat, wall))

        stock_base, stop_stock, stock_train = stock_server(tmp)
        call(f"{stock_base}/webhooks/rest/webhook", {"sender": "warm-up", "message": "hello"})
        lat, wall = [], 0.0
        for r in range(args.rounds):
            ls, w = drive(stock_base, [stock_script(i + r) for i in range(args.workers)])
            lat += ls
            wall += w
        stop_stock()
        results.append(row("stock `rasa init` (DIET + TED, its own data)", lat, wall))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = "\n".join(
        [
            f"Measured {dt.date.today().isoformat()} on {machine()}; "
            f"{args.workers} concurrent conversations x 6 messages x {args.rounds} rounds each;"
            f" stock training took {stock_train:.0f} s.",
            "",
            "| server | messages | messages/s | p50 ms | p95 ms |",
            "|---|---:|---:|---:|---:|",
            *results,
        ]
    )
    print(table)
    if args.write:
        write_section(args.write, "bench-dialogue", "## Dialogue throughput (`make bench`)", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
