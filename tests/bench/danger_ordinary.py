"""How many ordinary messages the danger detector flags: the held-out intent set's messages
(``tests/data/heldout``, every intent but ``emergency``, Burmese also in Zawgyi), assessed by a
trained model's danger detector at its per-language thresholds. A flagged message opens an
``immediate`` case and alerts a caseworker: this is what a low threshold costs them.

    uv run python tests/bench/danger_ordinary.py [models/X.tar.gz ...]
"""

from __future__ import annotations

import json
import sys
import tarfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from nlu import danger  # noqa: E402
from nlu.evaluation import load_heldout  # noqa: E402
from nlu.script import normalize  # noqa: E402


def detector_of(model: Path) -> danger.DangerDetector:
    with tarfile.open(model) as tar:
        name = next(n for n in tar.getnames() if n.endswith("/danger.json"))
        return danger.DangerDetector.from_json(json.load(tar.extractfile(name)))


def main(argv: list[str]) -> int:
    models = [Path(a) for a in argv] or [
        max((ROOT / "models").glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    ]
    rows = [r for r in load_heldout() if r["intent"] != "emergency"]
    for model in models:
        detector = detector_of(model)
        flagged, seen = Counter(), Counter()
        for r in rows:
            keys = ("all", f"lang:{r['language']}", r["intent"])
            hit = detector.assess(normalize(r["text"])[0], r["language"]).danger
            for key in keys:
                seen[key] += 1
                flagged[key] += hit
        print(f"{model.name}: {seen['all']} ordinary messages")
        print(", ".join(f"{k} {flagged[k] / seen[k]:.3f}" for k in sorted(seen)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
