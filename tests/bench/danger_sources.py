"""Where the danger decision comes from, on the development set: which part found each danger
message and which part raised each false alarm.

Parses every row of ``tests/data/danger/dev`` once through the trained model (language, intent,
the danger component's output), then re-applies the dialogue's first-message rule
(``actions.dialogue.Turn.danger_kind``) offline, and also with a danger detector freshly trained
from the packs (seconds), so that a change to a lexicon, its examples or a threshold is seen at
once without retraining the Rasa model. Development set only: the evaluation set is for
``make bench-danger``.

    uv run python tests/bench/danger_sources.py [--model models/X.tar.gz] [--errors LANG,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from nlu import danger  # noqa: E402
from nlu.danger_eval import DANGER_SETS, load_danger_set  # noqa: E402


def parse_rows(model: Path, rows: list[dict], cache: Path) -> list[dict]:
    key = f"{model.name}:{len(rows)}"
    if cache.is_file():
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("key") == key:
            return data["parsed"]
    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)
    agent = Agent.load(str(model))
    loop = asyncio.new_event_loop()
    parsed = []
    for row in rows:
        result = loop.run_until_complete(agent.parse_message(row["text"]))
        ranking = {i["name"]: i["confidence"] for i in result.get("intent_ranking") or []}
        parsed.append(
            {
                "text": result.get("text"),
                "language": result.get("language"),
                "intent": (result.get("intent") or {}).get("name"),
                "emergency": ranking.get("emergency", 0.0),
                "danger": result.get("danger"),
                "danger_kind": result.get("danger_kind"),
                "danger_weak": result.get("danger_weak"),
            }
        )
    cache.write_text(json.dumps({"key": key, "parsed": parsed}, ensure_ascii=False), "utf-8")
    return parsed


def decide(p: dict, assessment, *, use_intent: bool = True) -> str | None:
    """The dialogue's rule for a new worker's first message (``Turn.danger_kind``): the source
    of the alarm, or None. The intent classifier's ``emergency`` counts only for a model
    without the danger detector."""
    from actions.dialogue import DANGER_SCORE

    if assessment.danger:
        return assessment.source
    if (
        use_intent
        and p.get("danger") is None
        and (p["intent"] == "emergency" or p["emergency"] >= DANGER_SCORE)
    ):
        return "intent"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--errors", default="", help="languages whose errors to list (or all)")
    parser.add_argument("--set", type=Path, default=DANGER_SETS["dev"], help="a folder of rows")
    parser.add_argument("--cache", type=Path, default=None, help="parsed rows (JSON)")
    args = parser.parse_args(argv)
    if args.set.resolve() == DANGER_SETS["eval"].resolve():
        parser.error("the evaluation set is for make bench-danger only")
    model = args.model or max((ROOT / "models").glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    rows = load_danger_set(args.set)
    cache = args.cache or Path(f"/tmp/danger_sources_{args.set.name}.json")
    parsed = parse_rows(model, rows, cache)
    detector = danger.train_from_packs(ROOT / "locales")
    show = set(filter(None, args.errors.split(",")))
    table: dict[str, Counter] = defaultdict(Counter)
    for row, p in zip(rows, parsed, strict=True):
        a = detector.assess(p["text"], p["language"])
        source = decide(p, a)
        group = ["all", f"lang:{row['language']}", f"{row['label']}:{row['kind']}"]
        for g in group:
            table[g][(row["label"], source is not None)] += 1
            if source:
                table[g][(row["label"], source)] += 1
        wrong = (source is not None) != (row["label"] == "danger")
        if wrong and ("all" in show or row["language"] in show):
            what = "MISSED" if row["label"] == "danger" else f"ALARM[{source}]"
            print(
                f"{what:18} {row['language']} {row['kind']:16} p={a.score:.2f} "
                f"th={a.threshold:.2f} em={p['emergency']:.2f} lang={p['language']} "
                f"{row['text'][:110]}"
            )
    print("| group | recall | missed | false alarms | lexicon / classifier / intent alarms |")
    print("|---|---|---|---|---|")
    for g, c in sorted(table.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        nd = c[("danger", True)] + c[("danger", False)]
        ns = c[("safe", True)] + c[("safe", False)]
        recall = f"{c[('danger', True)] / nd:.3f}" if nd else "-"
        alarms = f"{c[('safe', True)] / ns:.3f} ({c[('safe', True)]}/{ns})" if ns else "-"
        print(
            f"| {g} | {recall} | {c[('danger', False)]} | {alarms} | "
            f"{c[('safe', 'lexicon')]} / {c[('safe', 'classifier')]} / {c[('safe', 'intent')]} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
