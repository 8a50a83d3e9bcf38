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
