"""The two evaluation sets (tests/data/heldout, tests/data/blind): format, labels, coverage, and
that no pack trains on them. Only counts are asserted and printed: the blind set's rows must stay
unread (tests/data/blind/README.md)."""

from __future__ import annotations

from collections import Counter

import pytest

from bot import locale_packs, taxonomy
from nlu.components.language import pack_examples
from nlu.evaluation import SETS, load_heldout
from nlu.gazetteer import fold

# the packs' required variants, plus Indonesian chat spelling, which only a writer can label
VARIANTS = {code: {"native", v} for code, v in locale_packs.REQUIRED_VARIANTS.items()}
VARIANTS["id"] = {"native", "informal"}


@pytest.fixture(scope="module")
def training_texts() -> set[str]:
    return {fold(text).strip() for text, _ in pack_examples(locale_packs.DEFAULT_LOCALES_DIR)}


@pytest.fixture(scope="module")
def sets() -> dict[str, list[dict]]:
    """Each set read once (reading re-encodes the Burmese rows in Zawgyi)."""
    return {name: load_heldout(directory) for name, directory in SETS.items()}


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_language_and_intent_is_covered_with_valid_labels(name, sets):
    rows = sets[name]
    codes = {p.code for p in locale_packs.discover(locale_packs.DEFAULT_LOCALES_DIR)}
    per_language = Counter(r["language"] for r in rows)
    assert set(per_language) == codes, per_language
    per_intent = Counter((r["language"], r["intent"]) for r in rows if r["variant"] != "zawgyi")
    for row in rows:
        assert row["intent"] in taxonomy.INTENTS, row["intent"]
        allowed = VARIANTS.get(row["language"], {"native"}) | {"zawgyi"}
        assert row["variant"] in allowed, (row["language"], row["variant"])
    thin = {k: n for k, n in per_intent.items() if n < 8}
    missing = {(c, i) for c in codes for i in taxonomy.INTENTS if (c, i) not in per_intent}
    assert not thin and not missing, (len(thin), sorted(missing)[:5])


@pytest.mark.parametrize("name", sorted(SETS))
def test_no_pack_trains_on_an_evaluation_message(name, sets, training_texts):
    """Messages of four words or more must not be training examples (accents, case and
    punctuation ignored). Shorter ones ("ok", "terima kasih") are what every worker types, in the
    packs and in any evaluation set alike."""
    rows = sets[name]
    copied = sum(
        1 for r in rows if len(r["text"].split()) >= 4 and fold(r["text"]).strip() in training_texts
    )
    assert copied == 0, f"{copied} {name} messages are also training examples"
