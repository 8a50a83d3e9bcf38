"""Language identification alone on the held-out set, as the pipeline does it (no Rasa model).

Trains ``LanguageIdentifier`` from the locale packs exactly as ``LanguageIdentifierComponent``
does (priors and deferral from each ``pack.yml``), normalises each held-out row as
``ScriptNormalizer`` does, and prints per-language accuracy and confusion counts.

    PYTHONPATH=. python tests/bench/langid_eval.py [--errors LANG ...] [--locales DIR]
                                                  [--set heldout|blind]

Columns: ``err`` wrong languages; ``flip`` wrong ones that would also move a conversation already
in the right language (confidence >= 0.9 and >= 3 words); ``1st`` wrong ones that would set the
language of a new conversation (confidence >= 0.5).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from bot import locale_packs
from bot.language import sticky_language
from nlu.components.language import pack_examples
from nlu.evaluation import SETS, load_heldout
from nlu.langid import FALLBACK_LANGUAGE, LanguageIdentifier
from nlu.script import normalize


def train(locales_dir: str = "locales") -> LanguageIdentifier:
    packs = locale_packs.discover(locales_dir)
    # the same settings LanguageIdentifierComponent.train reads from each pack.yml
    return LanguageIdentifier.train(
        pack_examples(locales_dir),
        FALLBACK_LANGUAGE,
        priors={p.code: float(p.meta.get("langid_prior", 1.0)) for p in packs},
        defers_to={
            p.code: p.meta["langid_defers_to"] for p in packs if p.meta.get("langid_defers_to")
        },
    )


def score(identifier: LanguageIdentifier, rows: list[dict]) -> dict:
    confusion: dict[str, Counter] = defaultdict(Counter)
    # flips: wrong, and confident and long enough to move a conversation already in the right
    # language (bot.language.sticky_language); first: wrong and would set a new conversation's
    flips: Counter = Counter()
    first: Counter = Counter()
    errors = []
    for row in rows:
        guess = identifier.identify(normalize(row["text"])[0])
        confusion[row["language"]][guess.language] += 1
        if guess.language != row["language"]:
            lang, text = row["language"], row["text"]
            flips[lang] += sticky_language(lang, guess.language, guess.confidence, text) != lang
            first[lang] += sticky_language(None, guess.language, guess.confidence, text) is not None
            errors.append(
                (
                    row["language"],
                    guess.language,
                    round(guess.confidence, 2),
                    row["variant"],
                    row["text"],
                )
            )
    return {"confusion": confusion, "errors": errors, "flips": flips, "first": first}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--locales", default="locales")
    parser.add_argument("--errors", nargs="*", default=[], help="languages whose errors to list")
    parser.add_argument("--set", default="heldout", choices=list(SETS), help="evaluation set")
    args = parser.parse_args()
    if args.errors and args.set == "blind":
        parser.error("the blind set's rows are never printed (tests/data/blind/README.md)")
    start = time.perf_counter()
    identifier = train(args.locales)
    trained = time.perf_counter() - start
    rows = load_heldout(SETS[args.set])
    result = score(identifier, rows)
    print(f"trained in {trained:.1f} s; {len(rows)} rows")
    print(f"{'lang':6} {'n':>4} {'acc':>6} {'err':>4} {'flip':>4} {'1st':>4}  confusions")
    for lang in sorted(result["confusion"]):
        c = result["confusion"][lang]
        n = sum(c.values())
        wrong = {k: v for k, v in c.most_common() if k != lang}
        flips, first = result["flips"][lang], result["first"][lang]
        print(f"{lang:6} {n:4d} {c[lang] / n:6.3f} {n - c[lang]:4d} {flips:4d} {first:4d}  {wrong}")
    ms = result["confusion"].get("ms")
    if ms:  # the taxonomy: a Malay message must be understood and answered in id or ms
        print(f"ms answered in id or ms: {(ms['ms'] + ms['id']) / sum(ms.values()):.3f}")
    for lang, guessed, conf, variant, text in result["errors"]:
        if lang in args.errors:
            print(f"  {lang}->{guessed} {conf:.2f} [{variant}] {text}")


if __name__ == "__main__":
    main()
