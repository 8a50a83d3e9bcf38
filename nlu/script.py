"""Script handling shared by the NLU components and the tools.

Normalisation is the first step of the pipeline, before any other component sees the text.

What it does, in order:

1. strips invisible characters (zero-width spaces and joiners, byte-order marks, bidi controls,
   soft hyphens) and control characters that phones and copy-paste leave behind;
2. detects Burmese typed in the Zawgyi font encoding and converts it to Unicode;
3. applies Unicode NFC, so that the same letter typed two ways is one letter;
4. turns native digits (Bengali ১২, Devanagari १२, Myanmar ၁၂, Thai ๑๒, and every other Unicode
   decimal digit) into ASCII digits, so that amounts and case references read as numbers;
5. drops the slashes a message starts with: Rasa reads ``/emergency`` or
   ``/affirm{"case_ref": "HX-1"}`` as an intent and entities given outright, at confidence 1,
   and ``/restart`` wipes the conversation (its ``RegexMessageHandler``, which runs after the
   whole pipeline on the text the pipeline leaves). A worker's message is never an instruction:
   ``/emergency`` is read as the word "emergency". Our buttons send numbers, never ``/...``.

The text as the worker typed it is kept in the message under ``original_text``.
"""

from __future__ import annotations

import functools
import logging
import unicodedata

import regex

logger = logging.getLogger(__name__)

# Zawgyi is detected with Google's myanmartools model; above this probability the text is
# treated as Zawgyi. 0.95 is the threshold the myanmartools authors recommend.
DEFAULT_ZAWGYI_THRESHOLD = 0.95

# Zero-width space/non-joiner/joiner, word joiner, BOM, soft hyphen, bidi marks and embeddings,
# Mongolian vowel separator, invisible math operators, variation selectors.
_INVISIBLE = regex.compile(
    r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufe00-\ufe0f]"
)
# Control characters other than tab and newline (which become spaces below).
_CONTROL = regex.compile(r"[\p{Cc}--[\t\n]]", flags=regex.V1)
_SPACES = regex.compile(r"\s+")
_MYANMAR = regex.compile(r"\p{Myanmar}")
_NON_ASCII_DIGIT = regex.compile(r"[\p{Nd}--[0-9]]", flags=regex.V1)
# Rasa's INTENT_MESSAGE_PREFIX ("/"), however many, with the spaces around them.
_INTENT_PREFIX = regex.compile(r"^(?:\s*/)+\s*")


@functools.lru_cache(maxsize=1)
def _zawgyi_detector():
    from myanmartools import ZawgyiDetector

    return ZawgyiDetector()


def zawgyi_probability(text: str) -> float:
    """Probability that ``text`` is Burmese typed in Zawgyi, not Unicode (0 if no Burmese)."""
    if not _MYANMAR.search(text):
        return 0.0
    return float(_zawgyi_detector().get_zawgyi_probability(text))


def looks_like_zawgyi(text: str) -> bool:
    """Probably Zawgyi, and converting it to Unicode would change it."""
    return zawgyi_probability(text) > 0.5 and zawgyi_to_unicode(text) != text


def zawgyi_to_unicode(text: str) -> str:
    from myanmar import converter

    return burmese_spelling(converter.convert(text, "zawgyi", "unicode"))


# Zawgyi's medial ra glyphs (U+103B and its wide, upper and lower forms U+107E-U+1084), which
# come before the consonant, like the vowel sign e (U+1031).
_ZAWGYI_BEFORE_CONSONANT = frozenset("\u1031\u103b" + "".join(map(chr, range(0x107E, 0x1085))))


def burmese_spelling(text: str) -> str:
    """Two Burmese spellings folded into the standard one: the vowel signs i and u in Unicode's
    order (i first; typed or converted the other way round they look the same), and the round aa
    after dha ("ဓား", knife; the tall one is a common misspelling, and what the Zawgyi converter
    writes)."""
    return text.replace("\u102f\u102d", "\u102d\u102f").replace("\u1013\u102b", "\u1013\u102c")


def _syllable_to_zawgyi(syllable: str) -> str:
    """One Unicode syllable as a Zawgyi typist writes it. python-myanmar gets two cases wrong,
    repaired here: it drops the medial wa of a syllable that also has a medial ra ("ကြွေး",
    debt, became "ကြေး", fee), and it writes the tall aa where the text has the round one."""
    from myanmar import converter

    def convert(text: str) -> str:
        zawgyi = converter.convert(text, "unicode", "zawgyi")
        if "\u102c" in syllable and "\u102b" not in syllable:  # the aa the text has
            zawgyi = zawgyi.replace("\u102b", "\u102c")
        return zawgyi

    if "\u103c\u103d" not in syllable:
        return convert(syllable)
    # Medial ra + medial wa: converted without the wa, which goes back after the consonant.
    zawgyi = convert(syllable.replace("\u103c\u103d", "\u103c", 1))
    at = 0
    while at < len(zawgyi) and zawgyi[at] in _ZAWGYI_BEFORE_CONSONANT:
        at += 1
    return zawgyi[: at + 1] + "\u103c" + zawgyi[at + 1 :]  # Zawgyi's wa


def unicode_to_zawgyi(text: str) -> str:
    """``text`` as a Zawgyi typist would have written it (the evaluation sets' Zawgyi copies)."""
    from myanmar import converter, language

    out = []
    for part in language.MorphoSyllableBreak(text=text, encoding=converter.encoders["unicode"]):
        syllable = part["syllable"]
        out.append(syllable if len(part) == 1 else _syllable_to_zawgyi(syllable))
    return "".join(out)


def zawgyi_copy(text: str) -> str | None:
    """The Zawgyi copy of a Unicode Burmese message for the evaluation sets
    (``unicode_to_zawgyi``), when the detector sees it as Zawgyi; None when there is none (no
    Burmese, or too short to tell the encodings apart)."""
    zawgyi = unicode_to_zawgyi(text)
    if zawgyi == text or zawgyi_probability(zawgyi) < 0.95:
        return None
    return zawgyi


def ascii_digits(text: str) -> str:
    """Every Unicode decimal digit (১, १, ၁, ๑, ...) as its ASCII digit."""
    return _NON_ASCII_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group())), text)


def strip_invisible(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def without_intent_prefix(text: str) -> str:
    """``text`` without the leading slashes that would make Rasa take it as an intent."""
    return _INTENT_PREFIX.sub("", text)


def normalize(text: str, zawgyi_threshold: float = DEFAULT_ZAWGYI_THRESHOLD) -> tuple[str, str]:
    """Normalise one message; returns the text and what conversion was applied (or "")."""
    conversion = ""
    text = strip_invisible(text)
    if zawgyi_probability(text) >= zawgyi_threshold:
        # Short texts can read the same in both encodings; then conversion changes nothing.
        converted = zawgyi_to_unicode(text)
        if converted != text:
            text, conversion = converted, "zawgyi"
    text = unicodedata.normalize("NFC", text)
    return without_intent_prefix(ascii_digits(text)), conversion


# Scripts by their letters. Latin is what is left.
# Scripts other than Latin that a locale pack may be written in (Unicode script names). The four
# this project ships first, then the scripts of other migrant workers' languages, so that adding a
# pack in one of them needs no code. Latin is what is left.
SCRIPT_PATTERNS = {
    name: regex.compile(rf"\p{{Script={name}}}")
    for name in (
        "Bengali",
        "Devanagari",
        "Myanmar",
        "Thai",
        "Khmer",
        "Lao",
        "Sinhala",
        "Tamil",
        "Telugu",
        "Gurmukhi",
        "Gujarati",
        "Malayalam",
        "Kannada",
        "Oriya",
        "Arabic",
        "Han",
        "Hangul",
        "Hiragana",
        "Katakana",
        "Cyrillic",
        "Greek",
        "Ethiopic",
        "Georgian",
        "Tibetan",
    )
}
_LETTER = regex.compile(r"\p{L}|\p{M}")
_LATIN = regex.compile(r"\p{Latin}")


@functools.lru_cache(maxsize=4096)
def script_of_char(ch: str) -> str:
    """Script of one letter or mark: a name from ``SCRIPT_PATTERNS``, ``Latn``, or ``Zyyy``."""
    for name, pattern in SCRIPT_PATTERNS.items():
        if pattern.match(ch):
            return name
    return "Latn" if _LATIN.match(ch) else "Zyyy"


def script_counts(text: str) -> dict[str, int]:
    """How many letters (and combining marks) of ``text`` belong to each script."""
    counts: dict[str, int] = {}
    for ch in _LETTER.findall(text):
        script = script_of_char(ch)
        counts[script] = counts.get(script, 0) + 1
    return counts


def script_of(text: str) -> str:
    """The main non-Latin script of ``text`` (``Bengali``, ``Myanmar``, ...) or ``Latn``.

    Mixed messages ("amar বেতন") count as the non-Latin script: workers mix English or romanized
    words into native script, rarely the other way round.
    """
    counts = script_counts(text)
    native = {k: v for k, v in counts.items() if k in SCRIPT_PATTERNS}
    if native:
        return max(native, key=native.get)
    return "Latn"


def has_diacritics(text: str) -> bool:
    """True when a Latin letter carries a mark (Vietnamese written with its tones, for instance)."""
    return any(
        _LATIN.match(ch) and (unicodedata.decomposition(ch) != "" or ch in "đĐ")
        for ch in unicodedata.normalize("NFC", text)
    )


def fold_latin(token: str) -> str:
    """A Latin-script token lower-cased and without diacritics ("Lương" -> "luong").

    Workers type Vietnamese with or without tones; folding makes both forms one feature.
    Tokens in other scripts are returned unchanged, so Bengali and Devanagari marks stay intact.
    """
    if not _LATIN.search(token) or script_of(token) != "Latn":
        return token
    decomposed = unicodedata.normalize("NFD", token.casefold().replace("đ", "d"))
    return unicodedata.normalize("NFC", regex.sub(r"\p{Mn}", "", decomposed))
