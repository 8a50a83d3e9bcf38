"""The caseworkers' canned replies exist in every locale pack; the dashboard's own words are
extracted and translated, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file

from bot import locale_packs
from bot.dashboard import canned, i18n
from bot.i18n import placeholders, read_catalog
from bot.sms import segments

ROOT = Path(__file__).resolve().parent.parent
PACKS = [p.code for p in locale_packs.discover()]
CANNED_TEMPLATE = read_catalog(ROOT / "locales" / "caseworker.pot")
DASHBOARD_TEMPLATE = read_catalog(i18n.LOCALES / "dashboard.pot")
EXAMPLE = {"case_ref": "HX-123456", "organisation": "Tenaganita"}


def test_canned_template_is_up_to_date_with_the_code():
    found = {
        message
        for _line, message, *_ in extract_from_file(
            "python", ROOT / "bot" / "dashboard" / "canned.py", keywords={"T_": None}
        )
    }
    assert found == set(canned.TEMPLATES.values()) == {m.id for m in CANNED_TEMPLATE if m.id}


@pytest.mark.parametrize("code", PACKS)
def test_every_canned_reply_in_every_pack(code):
    path = canned.catalog_path(ROOT / "locales", code)
    assert path.is_file(), f"{code} has no caseworker catalogue: make i18n-update"
    entries = {m.id: m for m in read_catalog(path) if m.id}
    replies = canned.CannedReplies()
    for key, source in canned.TEMPLATES.items():
        entry = entries.get(source)
        assert entry is not None and entry.string and not entry.fuzzy, f"{code}: {key}"
        assert placeholders(entry.string) == placeholders(source), f"{code}: {key}"
        if code != "en":
            assert entry.string != source, f"{code}: {key} is not translated"
        text = replies.text(code, key, **EXAMPLE)
        assert segments(text).count <= 3, f"{code}: {key} is {segments(text).count} SMS"


def test_canned_replies_fall_back_to_english_and_fill_placeholders():
    replies = canned.CannedReplies()
    choices = replies.choices("my", **EXAMPLE)
    assert [c["key"] for c in choices] == list(canned.TEMPLATES)
    referred = next(c for c in choices if c["key"] == "referred")
    assert "Tenaganita" in referred["text"] and "HX-123456" in referred["text"]
    assert re.search(r"[\u1000-\u109f]", referred["text"])  # Burmese script
    assert referred["english"].startswith("We sent your case HX-123456 to Tenaganita")
    assert replies.text("xx", "closed", **EXAMPLE).startswith("Your case HX-123456 is closed")


def _dashboard_messages() -> set[str]:
    method_map = [("bot/dashboard/**.py", "python"), ("bot/dashboard/templates/**.html", "jinja2")]
    return {
        message
        for _file, _line, message, *_ in extract_from_dir(
            ROOT, method_map=method_map, keywords={"_": None, "_l": None}, comment_tags=()
        )
    }


def test_dashboard_template_is_up_to_date():
    """A new _() in a template or _l() in bot/dashboard must be extracted (make i18n-dashboard)."""
    assert _dashboard_messages() == {m.id for m in DASHBOARD_TEMPLATE if m.id}


def _named(text: str) -> list[str]:
    return sorted(re.findall(r"%\((\w+)\)s", text))


@pytest.mark.parametrize("code", [c for c in i18n.load() if c != i18n.SOURCE])
def test_dashboard_catalogue_is_complete(code):
    entries = {m.id: m for m in read_catalog(i18n.catalog_path(code)) if m.id}
    for message in DASHBOARD_TEMPLATE:
        if not message.id:
            continue
        entry = entries.get(message.id)
        assert entry is not None and entry.string, f"{code}: untranslated {message.id!r}"
        assert not entry.fuzzy, f"{code}: fuzzy {message.id!r}"
        assert _named(entry.string) == _named(message.id), f"{code}: {entry.string!r}"


def test_dashboard_has_english_and_another_language():
    assert {"en", "th"} <= set(i18n.load())
