"""NLU benchmark: our pipeline against stock Rasa, trained on the same data, in the same run.

    uv run python tests/bench/bench_nlu.py [--write docs/benchmarks.md] [--extra CONFIG ...]

For each configuration: train on every locale pack (timed), then parse the evaluation sets (the
held-out set ``tests/data/heldout/*.tsv`` and the blind set ``tests/data/blind/*.tsv``, neither
ever trained on; Burmese rows are also run re-encoded in Zawgyi) and report, for each set, per
language and overall, intent macro-F1, language-identification accuracy and parse latency
p50/p95. The stock pipeline is the one ``rasa init`` writes (``stock_config.yml``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot import cli, locale_packs
from nlu.evaluation import SETS, evaluate, load_heldout

STOCK_CONFIG = Path(__file__).with_name("stock_config.yml")
MARK_BEGIN = "<!-- bench-nlu:begin -->"
MARK_END = "<!-- bench-nlu:end -->"


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


def table(results: dict[str, dict], train_times: dict[str, float]) -> str:
    names = list(results)
    keys = [k for k in results[names[0]] if not k.startswith("_")]
    keys = sorted(keys, key=lambda k: (k == "all", "/" in k, k))
    head = "| language | n | " + " | ".join(f"{n} intent F1 | {n} lang acc" for n in names) + " |"
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
    parser.add_argument(
        "--sets", nargs="*", default=list(SETS), choices=list(SETS), help="evaluation sets"
    )
    parser.add_argument(
        "--errors", type=int, default=0, help="print this many misclassified held-out rows"
    )
    args = parser.parse_args(argv)
    cli._quiet_logs()

    sets = {name: load_heldout(SETS[name]) for name in args.sets}
    for name, rows in sets.items():
        print(f"{name} rows: {len(rows)}", file=sys.stderr)
    # results[set][pipeline]
    results: dict[str, dict[str, dict]] = {name: {} for name in sets}
    train_times: dict[str, float] = {}

    def score(pipeline: str, model: Path) -> None:
        for name, rows in sets.items():
            results[name][pipeline] = evaluate(model, rows)

    with tempfile.TemporaryDirectory() as tmp:
        configs = [("ours", ROOT / "config.yml")] + [(Path(c).stem, Path(c)) for c in args.extra]
        for name, config in configs:
            start = time.perf_counter()
            model = cli.train(config_path=config, models_dir=Path(tmp) / name, force=True)
            train_times[name] = time.perf_counter() - start
            score(name, model)
            print(f"{name}: trained in {train_times[name]:.0f} s", file=sys.stderr)
        if not args.no_stock:
            start = time.perf_counter()
            model = train_stock(Path(tmp) / "stock", locale_packs.DEFAULT_LOCALES_DIR)
            train_times["stock"] = time.perf_counter() - start
            score("stock", model)
    parts = []
    for name, rows in sets.items():
        parts.append(f"**{name}** set (`tests/data/{name}/`, {len(rows)} messages):\n")
        parts.append(table(results[name], train_times))
        parts.append("")
    out = "\n".join(parts).rstrip()
    stamp = (
        f"Measured {datetime.date.today().isoformat()} on {platform.node() or 'this machine'}: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Training time includes loading the data; latencies are over each set's messages."
    )
    print(stamp)
    print(out)
    if args.errors and "heldout" in results:
        # only the held-out (development) set: the blind set's rows are never printed
        for err in results["heldout"]["ours"]["_errors"][: args.errors]:
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
