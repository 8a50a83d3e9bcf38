"""Every response exists in every locale pack, translated, with the same placeholders."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from bot import locale_packs
from bot.i18n import Translations, catalog_path, placeholders, read_catalog
from bot.sms import segments

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"
TEMPLATE = read_catalog(LOCALES / "messages.pot")
SOURCE_IDS = {m.id for m in TEMPLATE if m.id}
PACKS = [p.code for p in locale_packs.discover()]


def test_template_is_up_to_date_with_the_code():
    """A new N_() string in the code must be extracted (make i18n-extract)."""
    found = set()
    for folder in ("actions", "bot"):
        for _file, _line, message, *_ in extract_from_dir(
            ROOT / folder, keywords={"N_": None}, comment_tags=()
        ):
            found.add(message)
    assert found == SOURCE_IDS


@pytest.mark.parametrize("code", PACKS)
def test_catalogue_is_complete(code):
    path = catalog_path(LOCALES, code)
    assert path.is_file(), f"{code} has no catalogue: run make i18n-update"
    catalog = read_catalog(path)
    entries = {m.id: m for m in catalog if m.id}
    missing = SOURCE_IDS - set(entries)
    assert not missing, f"{code} lacks {sorted(missing)}"
    for msgid in SOURCE_IDS:
        entry = entries[msgid]
        assert entry.string, f"{code}: untranslated {msgid!r}"
        assert not entry.fuzzy, f"{code}: fuzzy {msgid!r}"
        assert placeholders(entry.string) == placeholders(msgid), f"{code}: {entry.string!r}"


@pytest.mark.parametrize("code", [c for c in PACKS if c != "en"])
def test_translations_are_really_translated(code):
    catalog = read_catalog(catalog_path(LOCALES, code))
    same = [m.id for m in catalog if m.id and m.string == m.id]
    assert not same, f"{code} copies English: {same}"


def test_translate_fills_placeholders_and_falls_back_to_english():
    t = Translations()
    msgid = next(i for i in sorted(SOURCE_IDS) if {"case_ref", "secret"} <= placeholders(i))
    text = t.text("bn", msgid, case_ref="HX-123456", secret="4821")
    assert (
        "HX-123456" in text
        and "4821" in text
        and text != t.text("en", msgid, case_ref="HX-123456", secret="4821")
    )
    assert t.text("xx", msgid, case_ref="HX-1", secret="1") == msgid.format(
        case_ref="HX-1", secret="1"
    )
    with pytest.raises(KeyError):
        t.text("bn", msgid)


@pytest.mark.parametrize("code", PACKS)
def test_responses_are_sms_sized(code):
    t = Translations()
    counts = [
        segments(t.text(code, i, **dict.fromkeys(placeholders(i), "HX-123456"))).count
        for i in SOURCE_IDS
    ]
    assert statistics.median(counts) <= 2, counts
    assert max(counts) <= 4, counts
