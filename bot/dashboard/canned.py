"""Canned replies: what a caseworker can send in the worker's language without reading it.

Each template is written here once, in English, marked with ``T_()`` (extracted by
``make i18n-extract`` into ``locales/caseworker.pot``), and translated in every locale pack's
catalogue of its own, ``locales/<code>/LC_MESSAGES/caseworker.po``: short, plain, SMS-sized, for
a worker with little schooling. The dashboard shows each template in the case's language with
its English meaning beside it; placeholders (``{case_ref}``, ``{organisation}``) are filled in
when it is chosen, and a translation must use exactly the placeholders of its source (tested).
"""

from __future__ import annotations

from pathlib import Path

from bot.i18n import SOURCE_LANGUAGE, read_catalog
from bot.locale_packs import DEFAULT_LOCALES_DIR

DOMAIN = "caseworker"


def T_(message: str) -> str:  # noqa: N802 - gettext's "mark now, translate later" convention
    return message


# key -> English text. The key is what the dashboard and its tests refer to.
TEMPLATES: dict[str, str] = {
    "received": T_(
        "We got your report {case_ref}. A caseworker is working on it. You can write here any time."
    ),
    "safe_time": T_("When is it safe for us to call or write to you? Tell us a day and a time."),
    "more_details": T_(
        "Please tell us more: the name of the company or agent, and the city where you work."
    ),
    "documents": T_(
        "If you have photos of your contract, payslips or passport, you can send them here."
        " Only our team sees them."
    ),
    "referred": T_(
        "We sent your case {case_ref} to {organisation}. They will contact you. You can still"
        " write here."
    ),
    "still_there": T_("Are you still there? Reply when it is safe for you."),
    "closed": T_("Your case {case_ref} is closed. Write again any time if you need help."),
}


def catalog_path(locales_dir: Path, code: str) -> Path:
    return Path(locales_dir) / code / "LC_MESSAGES" / f"{DOMAIN}.po"


class CannedReplies:
    """Every pack's caseworker catalogue, read once from its ``.po`` file."""

    def __init__(self, locales_dir: Path | str = DEFAULT_LOCALES_DIR) -> None:
        self._catalogs: dict[str, dict[str, str]] = {}
        for pack in sorted(Path(locales_dir).iterdir()):
            path = catalog_path(Path(locales_dir), pack.name)
            if path.is_file():
                self._catalogs[pack.name] = {
                    m.id: m.string for m in read_catalog(path) if m.id and m.string and not m.fuzzy
                }

    @property
    def languages(self) -> list[str]:
        return sorted(self._catalogs)

    def text(self, language: str | None, key: str, **values: object) -> str:
        """Template ``key`` in ``language`` (English when the pack lacks it), filled in."""
        source = TEMPLATES[key]
        catalog = self._catalogs.get(language or SOURCE_LANGUAGE, {})
        return (catalog.get(source) or source).format(**values)

    def choices(self, language: str | None, **values: object) -> list[dict]:
        """What the reply box offers: each template in ``language`` with its English meaning."""
        return [
            {
                "key": key,
                "text": self.text(language, key, **values),
                "english": self.text(SOURCE_LANGUAGE, key, **values),
            }
            for key in TEMPLATES
        ]
