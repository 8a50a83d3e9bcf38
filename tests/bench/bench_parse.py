"""CPU time of one message's parse (the whole NLU graph), this checkout against others, one run.

    uv run python tests/bench/bench_parse.py [--baseline PATH ...] [--rounds 3] [--every 2]

Each checkout (this one first, then every ``--baseline``, for instance a ``git worktree`` of an
earlier commit with that commit's model in its ``models/``) parses every ``--every``-th message
of the held-out intent set (``tests/data/heldout``) in its own process, with its own code and
model, through Rasa's ``Agent.parse_message``. The rounds alternate between the checkouts so
that a noisy machine weighs on each alike. Printed per checkout: the median over rounds of the
CPU milliseconds a message (process time, so one thread's waiting is not counted) and of the
wall milliseconds, and the ratio to this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker(root: Path, every: int) -> dict:
    sys.path.insert(0, str(root))
    os.chdir(root)
    import asyncio
    import time

    from rasa.core.agent import Agent

    from bot import cli
    from nlu.evaluation import load_heldout

    model = cli.train(models_dir=root / "models")  # the checkout's own model, trained if missing
    agent = Agent.load(str(model))
    loop = asyncio.new_event_loop()
    rows = load_heldout()[::every]
    for text in ("warm up", "আমার বেতন", "เงินเดือน", "lương"):
        loop.run_until_complete(agent.parse_message(text))
    cpu, wall = time.process_time(), time.perf_counter()
    for row in rows:
        loop.run_until_complete(agent.parse_message(row["text"]))
    n = len(rows)
    return {
        "model": model.name,
        "messages": n,
        "cpu_ms": 1000 * (time.process_time() - cpu) / n,
        "wall_ms": 1000 * (time.perf_counter() - wall) / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=2, help="every n-th held-out message")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.every)), flush=True)
        return 0
    checkouts = [ROOT, *[p.resolve() for p in args.baseline]]
    results: dict[Path, list[dict]] = {c: [] for c in checkouts}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HELPLINE_EMBED_THREADS": "1"}
    for r in range(args.rounds):
        for checkout in checkouts if r % 2 == 0 else checkouts[::-1]:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(checkout), "--every", str(args.every)],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{checkout}: the worker failed (exit {proc.returncode})")
            results[checkout].append(json.loads(line[len("RESULT ") :]))
            print(f"round {r + 1}: {checkout}: {results[checkout][-1]}", file=sys.stderr)
    ours = statistics.median(x["cpu_ms"] for x in results[ROOT])
    print(
        "| checkout | model | messages | CPU ms a message (median) | wall ms | ratio to this one |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for checkout, runs in results.items():
        cpu = statistics.median(x["cpu_ms"] for x in runs)
        wall = statistics.median(x["wall_ms"] for x in runs)
        print(f"| {checkout} | {runs[0]['model']} | {runs[0]['messages']} | {cpu:.1f} "
              f"| {wall:.1f} | {cpu / ours:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
