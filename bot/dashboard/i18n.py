"""The dashboard's own words: a gettext domain of its own (``dashboard``), apart from the bot's.

Written in English in the templates (``{{ _("...") }}``) and in ``bot/dashboard/*.py``
(``_l("...")``), extracted by ``make i18n-dashboard`` into ``bot/dashboard/locales/dashboard.pot``
and translated in ``bot/dashboard/locales/<code>/LC_MESSAGES/dashboard.po``. The ``.po`` files
are read directly (compiled in memory), as for the bot. A caseworker picks the language with the
switcher on every page; it is kept with their sign-in.
"""

from __future__ import annotations

import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "dashboard"
SOURCE = "en"
# Language names as their readers write them, for the switcher.
NAMES = {"en": "English", "th": "ไทย", "ms": "Bahasa Melayu"}


def _l(message: str) -> str:  # noqa: N802 - marked for extraction, translated where shown
    return message


def catalog_path(code: str) -> Path:
    return LOCALES / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def load() -> dict[str, gettext.NullTranslations]:
    """Every language the dashboard has, English first."""
    out: dict[str, gettext.NullTranslations] = {SOURCE: gettext.NullTranslations()}
    for path in sorted(LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        code = path.parent.parent.name
        if code == SOURCE:
            continue
        with open(path, "rb") as f:
            catalog = read_po(f)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        out[code] = gettext.GNUTranslations(buffer)
    return out
