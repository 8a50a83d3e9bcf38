"""NLU benchmark: our pipeline against stock Rasa, trained on the same data, in the same run.

    uv run python tests/bench/bench_nlu.py [--write docs/benchmarks.md] [--extra CONFIG ...]

For each configuration: train on every locale pack (timed), then parse the held-out set
(``tests/data/heldout/*.tsv``, never trained on; Burmese rows are also run re-encoded in Zawgyi)
and report, per language and overall, intent macro-F1, language-identification accuracy and parse
latency p50/p95. The stock pipeline is the one ``rasa init`` writes (``stock_config.yml``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot import cli, locale_packs  # noqa: E402

HELDOUT_DIR = ROOT / "tests" / "data" / "heldout"
STOCK_CONFIG = Path(__file__).with_name("stock_config.yml")
MARK_BEGIN = "<!-- bench-nlu:begin -->"
MARK_END = "<!-- bench-nlu:end -->"


def load_heldout(directory: Path = HELDOUT_DIR) -> list[dict]:
    """Held-out rows ``{"language", "intent", "variant", "text"}``, plus Zawgyi copies of Burmese."""
    from nlu.script import zawgyi_probability

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
    from myanmar import converter

    for row in [r for r in rows if r["language"] == "my"]:
        zawgyi = converter.convert(row["text"], "unicode", "zawgyi")
        if zawgyi != row["text"] and zawgyi_probability(zawgyi) >= 0.95:
            rows.append({**row, "variant": "zawgyi", "text": zawgyi})
    return rows


def train_stock(models_dir: Path, locales_dir: Path) -> Path:
    """Stock Rasa on the same NLU files and domain."""
    from rasa.api import train as rasa_train

    files = [str(f) for p in locale_packs.discover(locales_dir) for f in p.nlu_files]
    result = rasa_train(
        domain=str(ROOT / "domain.yml"),
        config=str(STOCK_CONFIG),
        training_files=files,
        output=str(models_dir),
        force_training=True,
        fixed_model_name="stock",
    )
    return Path(result.model)


def evaluate(model: Path, rows: list[dict]) -> dict:
    from rasa.core.agent import Agent
    from sklearn.metrics import f1_score

    agent = Agent.load(str(model))
    loop = asyncio.new_event_loop()
    for text in ("warm up", "আমার বেতন", "เงินเดือน"):
        loop.run_until_complete(agent.parse_message(text))
    latencies = []
    predictions = []
    for row in rows:
        start = time.perf_counter()
        result = loop.run_until_complete(agent.parse_message(row["text"]))
        latencies.append((time.perf_counter() - start) * 1000)
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
    result["_latency"] = {
        "p50": statistics.median(latencies),
        "p95": statistics.quantiles(latencies, n=20)[-1],
    }
    result["_errors"] = [
        (rows[i]["language"], rows[i]["intent"], predictions[i][0], rows[i]["text"])
        for i in range(len(rows))
        if predictions[i][0] != rows[i]["intent"]
    ]
    return result


def table(results: dict[str, dict], train_times: dict[str, float]) -> str:
    names = list(results)
    keys = [k for k in results[names[0]] if not k.startswith("_")]
    keys = sorted(keys, key=lambda k: (k == "all", "/" in k, k))
    head = "| language | n | " + " | ".join(
        f"{n} intent F1 | {n} lang acc" for n in names
    ) + " |"
    sep = "|---|---:|" + "---:|---:|" * len(names)
    lines = [head, sep]
    for key in keys:
        cells = [key, str(results[names[0]][key]["n"])]
        for n in names:
            s = results[n][key]
            cells.append(f"{s['f1']:.3f}")
            cells.append("n/a" if s["lang_acc"] is None else f"{s['lang_acc']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| pipeline | training time (s) | parse p50 (ms) | parse p95 (ms) |")
    lines.append("|---|---:|---:|---:|")
    for n in names:
        lat = results[n]["_latency"]
        lines.append(f"| {n} | {train_times[n]:.0f} | {lat['p50']:.1f} | {lat['p95']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", help="update this markdown file's NLU section")
    parser.add_argument("--extra", nargs="*", default=[], help="more configs to compare")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock Rasa baseline")
    parser.add_argument("--errors", type=int, default=0, help="print this many misclassified rows")
    args = parser.parse_args(argv)
    cli._quiet_logs()

    rows = load_heldout()
    print(f"held-out rows: {len(rows)}", file=sys.stderr)
    results: dict[str, dict] = {}
    train_times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = [("ours", ROOT / "config.yml")] + [(Path(c).stem, Path(c)) for c in args.extra]
        for name, config in configs:
            start = time.perf_counter()
            model = cli.train(config_path=config, models_dir=Path(tmp) / name, force=True)
            train_times[name] = time.perf_counter() - start
            results[name] = evaluate(model, rows)
            print(f"{name}: trained in {train_times[name]:.0f} s", file=sys.stderr)
        if not args.no_stock:
            start = time.perf_counter()
            model = train_stock(Path(tmp) / "stock", locale_packs.DEFAULT_LOCALES_DIR)
            train_times["stock"] = time.perf_counter() - start
            results["stock"] = evaluate(model, rows)
    out = table(results, train_times)
    stamp = (
        f"Measured {datetime.date.today().isoformat()} on {platform.node() or 'this machine'}: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{len(rows)} held-out messages. Training time includes loading the data."
    )
    print(stamp)
    print(out)
    if args.errors:
        for err in results["ours"]["_errors"][: args.errors]:
            print("\t".join(str(x) for x in err))
    if args.write:
        path = Path(args.write)
        text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
        section = f"{MARK_BEGIN}\n{stamp}\n\n{out}\n{MARK_END}"
        if MARK_BEGIN in text:
            before, rest = text.split(MARK_BEGIN, 1)
            text = before + section + rest.split(MARK_END, 1)[1]
        else:
            text += f"\n## NLU (`make bench-nlu`)\n\n{section}\n"
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
