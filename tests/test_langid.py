"""Language identification (nlu.langid) trained on the real locale packs."""

import pytest

from nlu.components.language import pack_examples
from nlu.langid import LanguageIdentifier
from nlu.script import normalize


@pytest.fixture(scope="module")
def identifier():
    return LanguageIdentifier.train(pack_examples("locales"))


# Written for this test, not taken from the packs.
TABLE = [
    # native scripts: decided by the script
    ("আমার বেতন তিন মাস ধরে দেয় না", "bn"),
    ("मेरो पासपोर्ट कम्पनीले राख्यो", "ne"),
    ("အလုပ်ရှင်က လစာမပေးဘူး", "my"),
    ("นายจ้างยึดพาสปอร์ตผม", "th"),
    # Zawgyi Burmese, after normalisation
    ("အလုပ္ရွင္က လစာမေပးဘူး", "my"),
    # mixed: native script with English words
    ("amar salary বাকি আছে", "bn"),
    # romanized Bengali and Nepali
    ("amar beton 3 mash dei nai", "bn"),
    ("dalal amar passport niye geche", "bn"),
    ("mero talab 2 mahina dekhi aako chaina", "ne"),
    ("sahu le passport diyena k garne", "ne"),
    # Vietnamese with and without diacritics
    ("công ty giữ hộ chiếu của tôi", "vi"),
    ("cong ty giu ho chieu cua toi", "vi"),
    ("e bi chu no luong 2 thang roi", "vi"),
    # Indonesian, informal
    ("gaji sy blm dibayar 3 bulan", "id"),
    ("majikan gak kasih libur sama sekali", "id"),
    # Malay
    ("majikan saya tak bayar gaji dah dua bulan", "ms"),
    # broken English
    ("boss not giving salary 2 month", "en"),
    ("agent take my passport what i do", "en"),
]


@pytest.mark.parametrize("text, language", TABLE)
def test_language_table(identifier, text, language):
    guess = identifier.identify(normalize(text)[0])
    assert guess.language == language, guess


def test_native_script_is_confident(identifier):
    assert identifier.identify("বেতন পাই নাই").confidence > 0.95


def test_short_universal_words_are_not_confident(identifier):
    # "ok" is typed in every language: the dialogue must not switch language on it
    assert identifier.identify("ok").confidence < 0.8


def test_no_letters_gives_zero_confidence(identifier):
    assert identifier.identify("123 !!! 😭").confidence == 0.0


def test_scripts_with_one_language_need_no_classifier(identifier):
    assert identifier.script_language == {
        "Bengali": "bn",
        "Devanagari": "ne",
        "Myanmar": "my",
        "Thai": "th",
    }
    assert set(identifier.classifiers) == {"Latn"}


@pytest.fixture(scope="module")
def pack_identifier():
    """Trained as LanguageIdentifierComponent trains it: with each pack.yml's prior and deferral."""
    from tests.bench.langid_eval import train

    return train("locales")


@pytest.mark.parametrize(
    "text, language",
    [
        # every word as common in English examples as in any other pack's: English
        ("ok", "en"),
        ("menu", "en"),
        ("hello sir", "en"),
        # words other packs use more than English does
        ("namaste", "ne"),
        ("gaji sy blm dibayar 3 bulan", "id"),
        ("majikan saya tak bayar gaji dah dua bulan", "ms"),
    ],
)
def test_pack_settings_defer_universal_words_at_inference_too(pack_identifier, text, language):
    assert pack_identifier.identify(normalize(text)[0]).language == language


class _FixedClassifier:
    classes_ = ["en", "id", "ms"]

    def __init__(self, probabilities):
        self.probabilities = probabilities

    def predict_proba(self, texts):
        import numpy as np

        return np.array([self.probabilities])


def test_a_deferring_language_competes_together_with_its_target():
    """Surely Bahasa, unsure which: Indonesian, not English. With the Malay prior alone, English
    (0.40) would beat Indonesian (0.25) and a down-weighted Malay (0.35 x 0.2)."""
    identifier = LanguageIdentifier(
        {},
        {"Latn": _FixedClassifier([0.40, 0.25, 0.35])},
        priors={"ms": 0.2},
        defers_to={"ms": "id"},
    )
    assert identifier.identify("kerja sini").language == "id"
    # Malay when it is clearly likelier than Indonesian, five times with prior 0.2
    identifier.classifiers["Latn"] = _FixedClassifier([0.10, 0.10, 0.80])
    assert identifier.identify("kerja sini").language == "ms"
    # and English when English outweighs Bahasa as a whole
    identifier.classifiers["Latn"] = _FixedClassifier([0.60, 0.20, 0.20])
    assert identifier.identify("kerja sini").language == "en"
