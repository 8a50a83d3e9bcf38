"""Rights answers: data in each locale pack (``locales/<code>/rights.yml``), editable without code.

``locales/en/rights.yml`` is the source: for each topic a ``general`` answer and answers for the
destination countries the rights brief covers, each with ``source`` and ``reviewed``. Other packs
translate ``text``. An answer is looked up in the worker's language, for their country, falling
back to the general answer (the dialogue then says so) and, for a pack that lacks an entry, to
English rather than to nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import yaml

from bot.locale_packs import DEFAULT_LOCALES_DIR

SOURCE_LANGUAGE = "en"
GENERAL = "general"


@dataclasses.dataclass(frozen=True)
class Answer:
    topic: str
    country: str  # ISO code, or "general"
    language: str
    text: str
    source: str
    reviewed: dt.date

    @property
    def general(self) -> bool:
        return self.country == GENERAL


class RightsError(ValueError):
    """A rights file that cannot be used; says which file and why."""


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RightsError(f"{path}: not valid YAML: {exc}") from exc
    answers = data.get("answers")
    if not isinstance(answers, dict):
        raise RightsError(f"{path}: no 'answers' mapping")
    return answers


def _date(value, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise RightsError(f"{where}: 'reviewed' must be a date YYYY-MM-DD, not {value!r}") from exc


class RightsAnswers:
    """Every pack's rights answers, loaded once."""

    def __init__(self, locales_dir: Path | str = DEFAULT_LOCALES_DIR) -> None:
        self.locales_dir = Path(locales_dir)
        self._answers: dict[str, dict] = {}
        for pack in sorted(self.locales_dir.iterdir()):
            path = pack / "rights.yml"
            if path.is_file():
                self._answers[pack.name] = _read(path)
        if SOURCE_LANGUAGE not in self._answers:
            raise RightsError(f"{self.locales_dir}/{SOURCE_LANGUAGE}/rights.yml is missing")
        for topic, entries in self._answers[SOURCE_LANGUAGE].items():
            if GENERAL not in entries:
                raise RightsError(f"rights.yml: topic {topic!r} has no general answer")
            for country, entry in entries.items():
                where = f"{SOURCE_LANGUAGE}/rights.yml {topic}.{country}"
                for key in ("text", "source", "reviewed"):
                    if not entry.get(key):
                        raise RightsError(f"{where}: '{key}' is missing")
                _date(entry["reviewed"], where)

    @property
    def languages(self) -> list[str]:
        return sorted(self._answers)

    @property
    def topics(self) -> list[str]:
        return sorted(self._answers[SOURCE_LANGUAGE])

    def countries(self, topic: str) -> list[str]:
        return sorted(c for c in self._answers[SOURCE_LANGUAGE].get(topic, {}) if c != GENERAL)

    def keys(self, language: str) -> set[tuple[str, str]]:
        return {(t, c) for t, entries in self._answers.get(language, {}).items() for c in entries}

    def answer(self, language: str | None, topic: str, country: str | None) -> Answer | None:
        """The answer on ``topic`` for ``country`` in ``language``; None for an unknown topic."""
        source = self._answers[SOURCE_LANGUAGE].get(topic)
        if not source:
            return None
        key = country if country in source else GENERAL
        entry = source[key]
        language = language if language in self._answers else SOURCE_LANGUAGE
        translated = (self._answers[language].get(topic) or {}).get(key) or {}
        text = translated.get("text") or entry["text"]
        if not translated.get("text"):
            language = SOURCE_LANGUAGE
        reviewed = translated.get("reviewed") or entry["reviewed"]
        return Answer(
            topic=topic,
            country=key,
            language=language,
            text=str(text).strip(),
            source=str(entry["source"]),
            reviewed=_date(reviewed, f"{language}/rights.yml {topic}.{key}"),
        )
