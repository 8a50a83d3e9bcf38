"""`make bench-danger`: danger detection measured as a safety system, end to end through the
dialogue (nlu/danger_eval.py), ours next to the previous release's pipeline in the same run.

The previous release decided danger from the intent classifier's ``emergency`` alone (top intent,
or its score >= 0.3); it is run on the same model and the same dialogue code, with only that
decision put back, so the difference is the danger detector and the conversation's memory.

Prints, per language and variant and per kind, recall on danger messages and the false-alarm
rate on hard negatives, and with ``--write`` replaces the table in docs/benchmarks.md. The
evaluation set is never printed row by row (``--errors`` works on the dev set only).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bot import cli  # noqa: E402
from nlu.danger_eval import DANGER_SETS, load_danger_set, run, summarize  # noqa: E402
from tests.bench.bench_dialogue import write_section  # noqa: E402


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(ours: dict, previous: dict, set_name: str) -> str:
    lines = [
        f"Set `{set_name}`. Recall: share of danger messages that opened an `immediate` case;"
        " false alarms: share of hard negatives that did.",
        "",
        "| group | danger n | recall (ours) | recall (previous) | hard negatives n |"
        " false alarms (ours) | false alarms (previous) |",
        "|---|---|---|---|---|---|---|",
    ]

    def order(key: str) -> tuple:
        kind, _, name = key.partition(":")
        rank = ["all", "lang", "variant", "kind", "form", "safe"].index(kind)
        return (rank, name)

    for key in sorted(ours, key=order):
        o, p = ours[key], previous.get(key, {})
        lines.append(
            f"| {key} | {o['n_danger']} | {pct(o['recall'])} | {pct(p.get('recall'))} |"
            f" {o['n_safe']} | {pct(o['false_alarms'])} | {pct(p.get('false_alarms'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(DANGER_SETS), default="eval")
    parser.add_argument("--model", help="default: train (or reuse) the current model")
    parser.add_argument("--write", help="a markdown file whose bench-danger table to replace")
    parser.add_argument("--errors", action="store_true", help="dev set only: list the misses")
    parser.add_argument("--no-previous", action="store_true", help="skip the previous pipeline")
    parser.add_argument(
        "--detector-only", action="store_true",
        help="ours without the intent classifier's emergency (to measure what it adds)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.errors and args.set != "dev":
        parser.error("--errors only on the dev set: the evaluation set is never read row by row")
    model = Path(args.model) if args.model else cli.train(models_dir=ROOT / "models")
    rows = load_danger_set(DANGER_SETS[args.set])
    start = time.perf_counter()
    results = run(model, rows, detector_only=args.detector_only)
    took = time.perf_counter() - start
    ours = summarize(results)
    previous = {} if args.no_previous else summarize(run(model, rows, legacy=True))
    text = table(ours, previous, args.set)
    print(text)
    print(f"\n{len(rows)} messages, {took:.0f} s through the dialogue (ours)")
    if args.errors:
        for r in results:
            if (r["label"] == "danger") != r["detected"]:
                what = "MISSED" if r["label"] == "danger" else "FALSE ALARM"
                print(f"{what}\t{r['language']}\t{r['kind']}\t{r['form']}\t{r['text']}")
    if args.write:
        stamp = f"Measured {datetime.date.today().isoformat()}, model `{model.name}`.\n\n"
        write_section(
            args.write, "bench-danger", "## Danger detection (`make bench-danger`)", stamp + text
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
