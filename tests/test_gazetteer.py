"""Country, language and case-reference entities (nlu.gazetteer) against the real locale packs."""

import pytest

from bot import locale_packs
from bot.taxonomy import normalize_case_ref
from nlu.components.entities import common_words
from nlu.gazetteer import Gazetteer, fold_with_offsets


@pytest.fixture(scope="module")
def training_data():
    from rasa.shared.nlu.training_data.loading import load_data

    files = [str(f) for p in locale_packs.discover() for f in p.nlu_files]
    from rasa.shared.nlu.training_data.training_data import TrainingData

    return TrainingData().merge(*[load_data(f) for f in files])


@pytest.fixture(scope="module")
def gazetteer(training_data):
    return Gazetteer.from_packs(locale_packs.discover(), common_words(training_data))


def values(gazetteer, text, entity):
    return [e["value"] for e in gazetteer.extract(text) if e["entity"] == entity]


@pytest.mark.parametrize(
    "text, iso",
    [
        ("agent took 4 lakh for Malaysia visa", "MY"),
        ("আমি মালয়েশিয়া থাকি", "MY"),
        ("म कतारमा काम गर्छु", "QA"),
        ("tôi làm ở Đài Loan", "TW"),
        ("toi lam o dai loan", "TW"),
        ("saya kerja di hongkong", "HK"),
        ("ทำงานที่ไต้หวัน", "TW"),
    ],
)
def test_country_names_in_many_languages_become_iso_codes(gazetteer, text, iso):
    assert values(gazetteer, text, "country") == [iso]


def test_the_english_word_my_is_not_malaysia(gazetteer):
    assert values(gazetteer, "my boss keeps my passport", "country") == []


def test_longest_name_wins(gazetteer):
    assert values(gazetteer, "I work in saudi arabia", "country") == ["SA"]


@pytest.mark.parametrize(
    "text, ref",
    [("any news HX-4821", "HX-4821"), ("hx 30517 status?", "HX-30517"), ("case hx5520", "HX-5520")],
)
def test_case_refs_are_normalised(gazetteer, text, ref):
    assert values(gazetteer, text, "case_ref") == [ref]
    assert normalize_case_ref(text) == ref


def test_no_case_ref_in_amounts(gazetteer):
    assert values(gazetteer, "agent took 48210 taka", "case_ref") == []


def test_language_names(gazetteer):
    assert values(gazetteer, "Bangla please", "language") == ["bn"]


def test_offsets_survive_case_folding_and_diacritics():
    folded, index = fold_with_offsets("ĐÀI Loan")
    assert folded == "dai loan"
    assert index == [0, 1, 2, 3, 4, 5, 6, 7]


def test_every_annotation_in_the_training_data_is_found(gazetteer, training_data):
    """The packs' annotated countries, languages and case references, found by the extractor."""
    missed = []
    for message in training_data.intent_examples:
        text = message.get("text")
        found = {(e["entity"], e["value"], e["start"]) for e in gazetteer.extract(text)}
        for ent in message.get("entities") or []:
            value = ent["value"]
            if ent["entity"] == "case_ref":
                value = normalize_case_ref(value) or value
            if (ent["entity"], value, ent["start"]) not in found:
                missed.append((text, ent["entity"], ent["value"]))
    total = sum(len(m.get("entities") or []) for m in training_data.intent_examples)
    # a few annotations may be short ambiguous names written in lower case
    assert len(missed) <= 0.02 * total, missed[:20]
