"""Script normalisation: Zawgyi, NFC, invisible characters, native digits (nlu.script)."""

import unicodedata

import pytest

from nlu.script import (
    ascii_digits,
    fold_latin,
    has_diacritics,
    normalize,
    script_of,
    strip_invisible,
    zawgyi_probability,
)

# Known Zawgyi -> Unicode pairs (the same words typed with the two encodings).
ZAWGYI_PAIRS = [
    ("မင္းကိုခ်စ္တယ္", "မင်းကိုချစ်တယ်"),  # I love you
    # Universal Declaration of Human Rights title, from the myanmartools documentation
    ("အျပည္ျပည္ဆိုင္ရာ လူ႔အခြင့္အေရး ေၾကညာစာတမ္း", "အပြည်ပြည်ဆိုင်ရာ လူ့အခွင့်အရေး ကြေညာစာတမ်း"),
    ("ေက်းဇူးတင္ပါတယ္", "ကျေးဇူးတင်ပါတယ်"),  # thank you
    ("ပတ္စပို႔", "ပတ်စပို့"),  # passport
]


@pytest.mark.parametrize("zawgyi, unicode", ZAWGYI_PAIRS)
def test_zawgyi_is_detected_and_converted(zawgyi, unicode):
    assert zawgyi_probability(zawgyi) >= 0.95
    text, conversion = normalize(zawgyi)
    assert text == unicode
    assert conversion == "zawgyi"


@pytest.mark.parametrize("unicode", [u for _, u in ZAWGYI_PAIRS])
def test_unicode_burmese_is_left_alone(unicode):
    assert zawgyi_probability(unicode) < 0.95
    assert normalize(unicode) == (unicode, "")


def test_no_burmese_means_no_zawgyi():
    assert zawgyi_probability("my salary") == 0.0


@pytest.mark.parametrize(
    "native, ascii",
    [
        ("১২০০০ টাকা", "12000 টাকা"),  # Bengali
        ("१२ घण्टा", "12 घण्टा"),  # Devanagari
        ("၁၂ နာရီ", "12 နာရီ"),  # Myanmar
        ("๑๒ ชั่วโมง", "12 ชั่วโมง"),  # Thai
        ("HX-৪৮২১", "HX-4821"),
        ("no digits", "no digits"),
    ],
)
def test_native_digits_become_ascii(native, ascii):
    assert ascii_digits(native) == ascii


def test_nfc_composes_decomposed_text():
    decomposed = unicodedata.normalize("NFD", "lương")
    assert decomposed != "lương"
    assert normalize(decomposed)[0] == "lương"


def test_invisible_and_control_characters_are_stripped():
    assert (
        strip_invisible("pass\u200bport\u200d \ufeffkept\x00 by\tboss\n") == "passport kept by boss"
    )
    # Bengali and Devanagari marks are letters' parts, not invisible characters
    assert strip_invisible("বেতন নাই") == "বেতন নাই"
    assert strip_invisible("\u200b\u200c") == ""


@pytest.mark.parametrize(
    "text, script",
    [
        ("আমার বেতন দেয় নাই", "Bengali"),
        ("amar বেতন", "Bengali"),
        ("मेरो तलब आएन", "Devanagari"),
        ("လစာမရသေးဘူး", "Myanmar"),
        ("เงินเดือนไม่ออก", "Thai"),
        ("toi chua duoc tra luong", "Latn"),
        ("12345 !!!", "Latn"),
    ],
)
def test_script_of(text, script):
    assert script_of(text) == script


def test_fold_latin_removes_vietnamese_diacritics_only():
    assert fold_latin("Lương") == "luong"
    assert fold_latin("Đi") == "di"
    assert fold_latin("বেতন") == "বেতন"
    assert has_diacritics("lương") and not has_diacritics("luong")
