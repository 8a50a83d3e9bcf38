"""Country, language and case-reference entities, found by name in every pack's language.

Workers name a country in many ways ("মালয়েশিয়া", "malaysia", "m'sia", "มาเลย์"); each pack's
``pack.yml`` lists the ways its speakers write each country and each language, and this module
finds them in a message and normalises them to the taxonomy's values (ISO 3166 codes, language
codes). Matching ignores case and, for Latin letters, diacritics. Names in Thai and Burmese, which
have no spaces between words, match anywhere; other names only as whole words.

A short name (up to 4 letters) that is also an ordinary word in the training examples ("MY" for
Malaysia and the English word "my") only matches written exactly as in ``pack.yml``.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import regex

from bot.taxonomy import CASE_REF_PATTERN, normalize_case_ref

_UNSPACED_SCRIPTS = regex.compile(
    r"[\p{Thai}\p{Myanmar}\p{Khmer}\p{Lao}\p{Han}\p{Hiragana}\p{Katakana}]"
)
_TOKEN = regex.compile(r"[\p{L}\p{M}\p{N}]+")


def fold_with_offsets(text: str) -> tuple[str, list[int]]:
    """``text`` case-folded and without Latin diacritics, and for each folded character the
    index of the character of ``text`` it came from (so matches map back to real offsets)."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        folded = ch.casefold()
        if folded.isascii() is False and regex.match(r"\p{Latin}", ch):
            folded = "".join(
                c
                for c in unicodedata.normalize("NFD", folded.replace("đ", "d"))
                if unicodedata.category(c) != "Mn"
            )
        for c in folded:
            out.append(c)
            index.append(i)
    return "".join(out), index


def fold(text: str) -> str:
    return fold_with_offsets(text)[0]


@dataclasses.dataclass
class Name:
    entity: str
    value: str
    surface: str  # as written in pack.yml
    exact_case: bool  # only match written exactly so (the folded form is a common word)


class Gazetteer:
    def __init__(self, names: Iterable[Name]) -> None:
        # longest names first, so "saudi arabia" wins over "saudi"
        self.names = sorted(names, key=lambda n: -len(n.surface))
        self._patterns = [(n, self._compile(n)) for n in self.names]

    def save(self, path: Path) -> None:
        """As JSON: a model file must never be a pickle (``nlu.components.pack_trained``)."""
        data = {"names": [dataclasses.asdict(n) for n in self.names]}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Gazetteer:
        return cls(Name(**n) for n in json.loads(path.read_text(encoding="utf-8"))["names"])

    @staticmethod
    def _compile(name: Name) -> regex.Pattern:
        surface = name.surface if name.exact_case else fold(name.surface)
        body = regex.escape(surface)
        if not _UNSPACED_SCRIPTS.search(surface):
            body = rf"(?<![\p{{L}}\p{{M}}\p{{N}}]){body}(?![\p{{L}}\p{{M}}\p{{N}}])"
        return regex.compile(body)

    @classmethod
    def from_packs(cls, packs, common_words: Iterable[str] = ()) -> Gazetteer:
        """Names from every pack; ``common_words`` are tokens seen outside entity annotations."""
        common = {fold(w) for w in common_words}
        names: dict[tuple[str, str, str], Name] = {}
        for pack in packs:
            for entity, table in (("country", pack.countries), ("language", pack.languages)):
                for value, surfaces in table.items():
                    for surface in surfaces:
                        surface = unicodedata.normalize("NFC", surface.strip())
                        if len(surface) < 2:
                            continue
                        exact = len(surface) <= 4 and fold(surface) in common
                        key = (entity, surface if exact else fold(surface), value)
                        names[key] = Name(entity, value, surface, exact)
        return cls(names.values())

    def extract(self, text: str) -> list[dict]:
        """Entities in ``text``: ``{"entity", "value", "start", "end", "text"}``, no overlaps,
        except that a name packs list both as a country and as a language ("myanmar", "thai",
        "indonesia", "မြန်မာ") is both: the dialogue reads the one its question asked for."""
        folded, index = fold_with_offsets(text)
        taken = [False] * len(text)
        readings: dict[tuple[int, int], set[str]] = {}  # entity types found on each span
        found: list[dict] = []

        def add(entity: str, value: str, start: int, end: int) -> None:
            if (start, end) in readings:  # the very same words: one more reading, one a type
                if entity in readings[start, end]:
                    return
            elif any(taken[start:end]):
                return
            readings.setdefault((start, end), set()).add(entity)
            for i in range(start, end):
                taken[i] = True
            found.append(
                {
                    "entity": entity,
                    "value": value,
                    "start": start,
                    "end": end,
                    "text": text[start:end],
                }
            )

        for m in CASE_REF_PATTERN.finditer(text):
            add("case_ref", normalize_case_ref(m.group()) or m.group(), m.start(), m.end())
        for name, pattern in self._patterns:
            haystack = text if name.exact_case else folded
            for m in pattern.finditer(haystack):
                if name.exact_case:
                    start, end = m.start(), m.end()
                else:
                    start, end = index[m.start()], index[m.end() - 1] + 1
                add(name.entity, name.value, start, end)
        return sorted(found, key=lambda e: e["start"])


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)
