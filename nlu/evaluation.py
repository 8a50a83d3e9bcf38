"""Evaluation on the held-out set: intent macro-F1, language accuracy and parse latency.

Used by the benchmark (``tests/bench/bench_nlu.py``) and by the quality gate in the tests.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "data"
# The held-out set: never trained on; its errors have been read while improving the packs, so it
# is a development set now.
HELDOUT_DIR = DATA_DIR / "heldout"
# The blind set: never trained on and never read by whoever tunes the packs or the pipeline (only
# its aggregate scores are printed, by the benchmark; see tests/data/blind/README.md).
BLIND_DIR = DATA_DIR / "blind"
SETS = {"heldout": HELDOUT_DIR, "blind": BLIND_DIR}


def load_heldout(directory: Path = HELDOUT_DIR) -> list[dict]:
    """Held-out rows ``{"language", "intent", "variant", "text"}``; Burmese also in Zawgyi."""
    rows = []
    for path in sorted(directory.glob("*.tsv")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected intent<TAB>variant<TAB>text")
            intent, variant, text = parts
            rows.append({"language": path.stem, "intent": intent, "variant": variant, "text": text})
    return with_zawgyi_copies(rows)


def with_zawgyi_copies(rows: list[dict]) -> list[dict]:
    """``rows`` and, for each Burmese row that has one, its Zawgyi copy (variant ``zawgyi``,
    ``nlu.script.zawgyi_copy``): how every evaluation set runs Burmese in both encodings."""
    from nlu.script import zawgyi_copy

    copies = []
    for row in rows:
        zawgyi = zawgyi_copy(row["text"]) if row["language"] == "my" else None
        if zawgyi is not None:
            copies.append({**row, "variant": "zawgyi", "text": zawgyi})
    return rows + copies


def parse_many(agent, texts: list[str], batch: int = 256) -> list[dict]:
    """What ``agent.parse_message`` returns for each of ``texts``, parsed ``batch`` at a time:
    the model's NLU graph run once for many messages, so that each component's ``process``
    gets them together (Rasa runs it with one). The same results as one at a time
    (tests/test_model.py compares them), in less time; for scoring a set, not for latency."""
    from rasa.core.channels.channel import UserMessage
    from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
    from rasa.shared.core.trackers import DialogueStateTracker

    processor = agent.processor
    target = processor.model_metadata.nlu_target
    out = []
    for i in range(0, len(texts), batch):
        results = processor.graph_runner.run(
            inputs={
                PLACEHOLDER_MESSAGE: [UserMessage(text) for text in texts[i : i + batch]],
                PLACEHOLDER_TRACKER: DialogueStateTracker.from_events("evaluation", []),
            },
            targets=[target],
        )
        for message in results[target]:
            parsed = {"text": "", "intent": {"name": None, "confidence": 0.0}, "entities": []}
            parsed.update(message.as_dict(only_output_properties=True))
            out.append(parsed)
    return out


def evaluate(model: Path, rows: list[dict], agent=None, batched: bool = False) -> dict:
    """Intent macro-F1 and language accuracy by language and variant, the errors, and parse
    latency (``_latency``, None when ``batched``: see ``parse_many``). ``agent``: a loaded
    model to reuse (``model`` is then only its name)."""
    from rasa.core.agent import Agent
    from sklearn.metrics import f1_score

    agent = agent or Agent.load(str(model))
    latencies = []
    if batched:
        parsed = parse_many(agent, [row["text"] for row in rows])
    else:  # one at a time, timed, after a warm-up
        loop = asyncio.new_event_loop()
        for text in ("warm up", "আমার বেতন", "เงินเดือน"):
            loop.run_until_complete(agent.parse_message(text))
        parsed = []
        for row in rows:
            start = time.perf_counter()
            parsed.append(loop.run_until_complete(agent.parse_message(row["text"])))
            latencies.append((time.perf_counter() - start) * 1000)
        loop.close()
    predictions = []
    for result in parsed:
        ranking = [r["name"] for r in result.get("intent_ranking") or []]
        # stock Rasa's FallbackClassifier answers nlu_fallback; score its best real intent
        intent = next((n for n in ranking if n != "nlu_fallback"), None)
        if intent is None:
            intent = (result.get("intent") or {}).get("name")
        predictions.append((intent, result.get("language")))
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_lang[row["language"]].append(i)
    by_lang["all"] = list(range(len(rows)))

    def scores(idx: list[int]) -> dict:
        gold = [rows[i]["intent"] for i in idx]
        pred = [predictions[i][0] or "" for i in idx]
        labels = sorted(set(gold))
        langs = [predictions[i][1] for i in idx]
        has_lang = any(lang is not None for lang in langs)
        return {
            "n": len(idx),
            "f1": f1_score(gold, pred, labels=labels, average="macro", zero_division=0),
            "lang_acc": (
                sum(langs[k] == rows[i]["language"] for k, i in enumerate(idx)) / len(idx)
                if has_lang
                else None
            ),
        }

    result = {lang: scores(idx) for lang, idx in by_lang.items()}
    variants: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row["variant"] != "native":
            variants[f"{row['language']}/{row['variant']}"].append(i)
    result.update({k: scores(v) for k, v in variants.items()})
    result["_latency"] = (
        {"p50": statistics.median(latencies), "p95": statistics.quantiles(latencies, n=20)[-1]}
        if latencies
        else None
    )
    result["_errors"] = [
        (rows[i]["language"], rows[i]["intent"], predictions[i][0], rows[i]["text"])
        for i in range(len(rows))
        if predictions[i][0] != rows[i]["intent"]
    ]
    return result
