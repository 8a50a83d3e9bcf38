"""Bot responses in the worker's language: gettext catalogues in the locale packs.

Every response is written once in English in the code, marked with ``N_()``, extracted with
``pybabel extract`` into ``locales/messages.pot`` and translated in each pack's
``locales/<code>/LC_MESSAGES/messages.po`` (``make i18n-extract``, ``make i18n-update``).
Catalogues are read from the ``.po`` files themselves, so editing a translation needs a restart
of the action server, never a retraining of the model. The language is always passed explicitly
(from the conversation's ``language`` slot): no global locale in an async server.

Placeholders are named (``{case_ref}``); a translation must use exactly the placeholders of its
source (the tests check every catalogue).
"""

from __future__ import annotations

import string
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.locale_packs import DEFAULT_LOCALES_DIR

DOMAIN = "messages"
SOURCE_LANGUAGE = "en"


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    """Marks a string for extraction; it is translated when sent, in the worker's language."""
    return message


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def catalog_path(locales_dir: Path, code: str) -> Path:
    return Path(locales_dir) / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(path: Path) -> Catalog:
    with open(path, "rb") as f:
        return read_po(f)


class Translations:
    """Every pack's catalogue, loaded once; ``text(language, message, **values)`` translates."""

    def __init__(self, locales_dir: Path | str = DEFAULT_LOCALES_DIR) -> None:
        self.locales_dir = Path(locales_dir)
        self._catalogs: dict[str, dict[str, str]] = {}
        for pack in sorted(self.locales_dir.iterdir()):
            path = catalog_path(self.locales_dir, pack.name)
            if path.is_file():
                catalog = read_catalog(path)
                self._catalogs[pack.name] = {
                    m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy
                }

    @property
    def languages(self) -> list[str]:
        return sorted(self._catalogs)

    def text(self, language: str | None, message: str, **values: object) -> str:
        """``message`` in ``language`` (English when a pack lacks it), placeholders filled."""
        catalog = self._catalogs.get(language or SOURCE_LANGUAGE, {})
        translated = catalog.get(message) or self._catalogs.get(SOURCE_LANGUAGE, {}).get(message)
        return (translated or message).format(**values)


def format_date(language: str | None, value) -> str:
    """A date as people of ``language`` write it (Babel/CLDR); Thai dates in the Buddhist era."""
    import datetime as dt

    from babel.dates import format_date as babel_format_date

    if isinstance(value, dt.datetime):
        value = value.date()
    locale = language or SOURCE_LANGUAGE
    try:
        if locale == "th":  # CLDR's Thai patterns are Gregorian; workers read the Buddhist year
            return f"{babel_format_date(value, 'd MMM', locale='th')} {value.year + 543}"
        return babel_format_date(value, format="medium", locale=locale)
    except (ValueError, LookupError):  # a pack whose language CLDR does not know
        return value.isoformat()


def sms_report(translations: Translations, rights=None) -> str:
    """Segments of every response and every rights answer in every language (GSM-7 160/153,
    UCS-2 70/67), with the median per language: ``make sms-report``."""
    import statistics

    from bot.sms import segments

    template = read_catalog(translations.locales_dir / f"{DOMAIN}.pot")
    rows: list[tuple[str, dict[str, str]]] = []
    for msgid in (m.id for m in template if m.id):
        values = dict.fromkeys(placeholders(msgid), "HX-123456")
        label = msgid.split("\n")[0][:40]
        rows.append(
            (
                label,
                {lang: translations.text(lang, msgid, **values) for lang in translations.languages},
            )
        )
    if rights is not None:
        for topic, country in sorted(rights.keys(SOURCE_LANGUAGE)):
            key = None if country == "general" else country
            texts = {lang: rights.answer(lang, topic, key).text for lang in translations.languages}
            rows.append((f"rights: {topic} / {country}", texts))
    languages = translations.languages
    lines = ["| response | " + " | ".join(languages) + " |", "|---|" + "---:|" * len(languages)]
    counts: dict[str, list[int]] = {lang: [] for lang in languages}
    for label, texts in rows:
        cells = []
        for lang in languages:
            s = segments(texts[lang])
            counts[lang].append(s.count)
            cells.append(f"{s.count} ({s.encoding[0]})")
        lines.append(f"| {label.replace('|', '/')} | " + " | ".join(cells) + " |")
    medians = [f"{statistics.median(counts[lang]):g}" for lang in languages]
    lines.append("| **median** | " + " | ".join(medians) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from bot.rights import RightsAnswers

    print(sms_report(Translations(), RightsAnswers()))
