"""How the danger detector was chosen: its parts and thresholds on the development set.

Trains the detector from the packs (seconds, no Rasa model) and scores the development set
(tests/data/danger/dev; never the evaluation set) for: the lexicon alone, the classifier alone,
and both, at several thresholds, and a few n-gram settings. Detector only: the dialogue's
memory and the intent classifier's ``emergency`` are not counted here (``make bench-danger``
measures the whole path).

    uv run python tests/bench/danger_choice.py [--errors LANG,...] [--threshold T]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from nlu import danger  # noqa: E402
from nlu.danger_eval import DANGER_SETS, load_danger_set  # noqa: E402
from nlu.script import normalize  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def rates(rows, hits) -> tuple[float, float]:
    d = [h for r, h in zip(rows, hits, strict=True) if r["label"] == "danger"]
    s = [h for r, h in zip(rows, hits, strict=True) if r["label"] == "safe"]
    return sum(d) / len(d), sum(s) / len(s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", default="", help="languages whose dev errors to list")
    parser.add_argument("--threshold", type=float, default=danger.THRESHOLD)
    parser.add_argument("--variants", action="store_true", help="also try n-gram settings")
    args = parser.parse_args(argv)
    rows = load_danger_set(DANGER_SETS["dev"])
    texts = [normalize(r["text"])[0] for r in rows]
    char, word = danger.VECTORIZERS
    settings = {"char_wb 2-5 + word 1-2 (chosen)": (char, word)}
    if args.variants:
        settings["char_wb 2-5 alone"] = (char,)
        settings["char_wb 1-4 + word 1-2"] = (dict(char, ngram_range=(1, 4)), word)
        settings["char 2-5 across words + word 1-2"] = (dict(char, analyzer="char"), word)
    print("| detector | threshold | recall | false alarms |\n|---|---|---|---|")
    chosen = None
    for name, vectorizer in settings.items():
        danger.VECTORIZERS = vectorizer
        start = time.perf_counter()
        det = danger.train_from_packs(ROOT / "locales")
        took = time.perf_counter() - start
        lex = [bool(det.lexicon.danger_matches(t)[0]) for t in texts]
        probs = [det.probability(t)[0] for t in texts]
        if chosen is None:
            chosen = (det, None)
            r, f = rates(rows, lex)
            print(f"| lexicon alone | - | {r:.3f} | {f:.3f} |")
        for th in THRESHOLDS:
            r, f = rates(rows, [p >= th for p in probs])
            label = f"{name}: classifier alone (trained in {took:.0f} s)"
            print(f"| {label} | {th} | {r:.3f} | {f:.3f} |")
        for th in THRESHOLDS:
            det.threshold = th
            r, f = rates(rows, [det.assess(t).danger for t in texts])
            print(f"| {name}: lexicon + classifier | {th} | {r:.3f} | {f:.3f} |")
    det, _ = chosen
    det.threshold = args.threshold
    results = [det.assess(t) for t in texts]
    show = set(filter(None, args.errors.split(",")))
    for r, a in zip(rows, results, strict=True):
        hit = a.danger
        if r["language"] in show and hit != (r["label"] == "danger"):
            what = "MISSED" if not hit else "FALSE ALARM"
            print(what, r["language"], r["kind"], a.source, round(a.score, 2), a.kind, r["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
