"""Tokenization for Thai, Burmese, Bengali, Devanagari and Latin text (MultilingualTokenizer)."""

import pytest
from rasa.shared.nlu.training_data.message import Message

from nlu.components.tokenizer import MultilingualTokenizer, burmese_syllables, segment, thai_words


def words(text):
    return [w for w, _, _ in segment(text)]


def test_thai_is_segmented_into_words():
    assert words("เงินเดือนไม่ออกสามเดือนแล้ว") == ["เงินเดือน", "ไม่", "ออก", "สาม", "เดือน", "แล้ว"]


def test_thai_emphatic_repeats_are_collapsed():
    assert thai_words("ช่วยด้วยยยย") == ["ช่วย", "ด้วย"] or thai_words("ช่วยด้วยยยย") == ["ช่วยด้วย"]


def test_burmese_is_split_into_syllables():
    # "salary not received yet": လ-စာ-မ-ရ-သေး-ဘူး
    assert burmese_syllables("လစာမရသေးဘူး") == ["လ", "စာ", "မ", "ရ", "သေး", "ဘူး"]
    # stacked consonants (virama) and killed consonants (asat) stay in their syllable
    assert burmese_syllables("ပတ်စပို့") == ["ပတ်", "စ", "ပို့"]
    assert burmese_syllables("မန္တလေး") == ["မန္တ", "လေး"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("আমার বেতন দেয় নাই", ["আমার", "বেতন", "দেয়", "নাই"]),
        ("मेरो तलब आएन", ["मेरो", "तलब", "आएन"]),
        ("পাসপোর্ট রেখে দিয়েছে।", ["পাসপোর্ট", "রেখে", "দিয়েছে"]),
        ("boss don't pay, 3 month!!", ["boss", "don't", "pay", "3", "month"]),
    ],
)
def test_combining_marks_stay_inside_words(text, expected):
    assert words(text) == expected


def test_mixed_scripts_in_one_message():
    assert words("boss ကပတ်စပို့ยึด") == ["boss", "က", "ပတ်", "စ", "ပို့", "ยึด"]


def test_offsets_point_into_the_text():
    text = "hello বেতন เงินเดือนไม่ออก လစာ"
    for word, start, end in segment(text):
        assert text[start:end] == word


def test_rasa_tokens_carry_folded_lemmas():
    tokenizer = MultilingualTokenizer(MultilingualTokenizer.get_default_config())
    tokens = tokenizer.tokenize(Message(data={"text": "Tôi chưa được trả Lương"}), "text")
    assert [t.text for t in tokens] == ["Tôi", "chưa", "được", "trả", "Lương"]
    assert [t.lemma for t in tokens] == ["toi", "chua", "duoc", "tra", "luong"]
    assert tokenizer.tokenize(Message(data={"text": ""}), "text") == []


def test_emoji_and_punctuation_only_messages_get_tokens():
    assert words("ok 👍") == ["ok", "👍"]
    tokenizer = MultilingualTokenizer(MultilingualTokenizer.get_default_config())
    assert [t.text for t in tokenizer.tokenize(Message(data={"text": "???"}), "text")] == ["???"]
