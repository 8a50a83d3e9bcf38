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
