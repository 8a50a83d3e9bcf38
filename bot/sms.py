"""SMS segments: what a reply costs a worker's helpline on SMS.

A message that fits the GSM 03.38 7-bit alphabet is sent as GSM-7: 160 characters in one
segment, 153 per segment when split (the rest carries the concatenation header); characters of
the extension table (``^{}\\[~]|€`` and form feed) take two. Anything else (Bengali, Thai, Burmese,
Vietnamese with its diacritics, emoji) is sent as UCS-2: 70 UTF-16 code units in one segment,
67 per segment when split.
"""

from __future__ import annotations

import dataclasses
import math

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
_BASIC = frozenset(GSM7_BASIC)
_EXTENSION = frozenset(GSM7_EXTENSION)


@dataclasses.dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    count: int


def is_gsm7(text: str) -> bool:
    return all(ch in _BASIC or ch in _EXTENSION for ch in text)


def segments(text: str) -> Segments:
    """How an SMS of ``text`` is encoded and into how many segments it is split."""
    if is_gsm7(text):
        units = sum(2 if ch in _EXTENSION else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    count = 0 if units == 0 else 1 if units <= single else math.ceil(units / multi)
    return Segments(encoding, units, count)


_SENTENCE_END = ".!?।॥။\n"
ELLIPSIS = "…"  # one character in UCS-2; a GSM-7 reply ends with "..." (no UCS-2 for one dot)
_GSM7_SUBSTITUTES = {
    "đ": "d", "Đ": "D", "…": "...", "‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-",
    "\u00a0": " ",
}  # fmt: skip


def _latin(ch: str) -> bool:
    import unicodedata

    return unicodedata.name(ch, "").startswith("LATIN")


def without_accents(text: str) -> str:
    """``text`` without diacritics, for a worker who chose cheaper SMS (Vietnamese "không dấu":
    "Lương của bạn" -> "Luong cua ban", "và" -> "va"): every accent of a Latin letter goes, as
    the worker asked, so the SMS is GSM-7 (160 characters a segment instead of 70). Other
    scripts are left as they are."""
    import unicodedata

    out = []
    for ch in text:
        ch = _GSM7_SUBSTITUTES.get(ch, ch)
        if len(ch) > 1 or ch.isascii() or not _latin(ch):
            out.append(ch)
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append(base if base and base != ch else ch)
    return unicodedata.normalize("NFC", "".join(out))


def _sentences(text: str) -> list[str]:
    """``text`` cut after sentence ends (Latin, Devanagari/Bengali danda, Burmese) and lines."""
    out, start = [], 0
    for i, ch in enumerate(text):
        # A line always ends here (a menu's "3 Check your case" must not be cut in two); a full
        # stop only before a space or the end ("RM1.5" goes on).
        if ch == "\n" or (ch in _SENTENCE_END and (i + 1 == len(text) or text[i + 1] in " \n")):
            out.append(text[start : i + 1].strip())
            start = i + 1
    if text[start:].strip():
        out.append(text[start:].strip())
    return [s for s in out if s]


def _fits(text: str) -> bool:
    return segments(text).count <= 1


def split_for_sms(text: str, budget: int = 4) -> list[str]:
    """``text`` as SMS parts of one segment each, cut at sentence ends and numbered ``(1/3)``;
    never more than ``budget`` parts: beyond that the reply is shortened and ends with "…"."""
    text = text.strip()
    if _fits(text):
        return [text]
    prefix = "(9/9) "
    parts: list[str] = []
    current = ""
    for sentence in _sentences(text):
        candidate = f"{current}\n{sentence}" if current else sentence
        if _fits(prefix + candidate):
            current = candidate
            continue
        if current:
            parts.append(current)
        # A sentence too long for one segment is cut at spaces (or anywhere, for Thai).
        while not _fits(prefix + sentence):
            cut = len(sentence)
            while cut > 1 and not _fits(prefix + sentence[:cut]):
                cut -= 1
            space = sentence.rfind(" ", 0, cut)
            cut = space if space > cut // 2 else cut
            parts.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        current = sentence
    if current:
        parts.append(current)
    if len(parts) > budget:
        parts = parts[:budget]
        last = parts[-1]
        ellipsis = "..." if is_gsm7(last) else ELLIPSIS
        while last and not _fits(prefix + last + ellipsis):
            last = last[:-1]
        parts[-1] = last.rstrip() + ellipsis
    total = len(parts)
    return [f"({i}/{total}) {p}" for i, p in enumerate(parts, start=1)]
