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

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(scripts)) as pool:
        latencies = [t for ts in pool.map(conversation, scripts) for t in ts]
    return latencies, time.perf_counter() - t0


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


def row(name: str, latencies: list[float], wall: float) -> str:
    q = statistics.quantiles(latencies, n=20)
    return (
        f"| {name} | {len(latencies)} | {len(latencies) / wall:.1f} | "
        f"{statistics.median(latencies) * 1000:.0f} | {q[18] * 1000:.0f} |"
    )


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
            f"Measured {dt.date.today().isoformat()} on {platform.machine()},"
            f" {os.cpu_count()} cores"
            f" ({platform.python_implementation()} {platform.python_version()}); "
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
        path = Path(args.write)
        text = path.read_text(encoding="utf-8")
        begin, end = "<!-- bench-dialogue:begin -->", "<!-- bench-dialogue:end -->"
        block = f"{begin}\n{table}\n{end}"
        if begin in text:
            text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
        else:
            text += f"\n## Dialogue throughput (`make bench`)\n\n{block}\n"
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
