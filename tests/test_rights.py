"""Rights answers and emergency contacts: complete in every pack, faithful to the sources."""

from __future__ import annotations

import os
import re
import statistics
from pathlib import Path

import pytest
import yaml

from bot import locale_packs
from bot.emergency import ContactsError, load_contacts
from bot.rights import RightsAnswers, RightsError
from bot.sms import segments
from bot.taxonomy import TOPIC_INTENTS

ROOT = Path(__file__).resolve().parent.parent
# The team's shared rights brief lives next to the repository (../shared), or where
# HELPLINE_RIGHTS_BRIEF says.
BRIEF = next(
    (
        p
        for p in (
            Path(os.environ.get("HELPLINE_RIGHTS_BRIEF", "/nonexistent")),
            ROOT.parent / "shared" / "rights-brief.md",
            Path("/work/shared/rights-brief.md"),
        )
        if p.is_file()
    ),
    ROOT.parent / "shared" / "rights-brief.md",
)
RIGHTS = RightsAnswers()
PACKS = [p.code for p in locale_packs.discover()]


def numbers(text: str) -> list[str]:
    return sorted(re.findall(r"\d+", text.replace(",", "")))


def test_every_topic_intent_has_a_general_answer():
    assert sorted(RIGHTS.topics) == sorted(TOPIC_INTENTS)


@pytest.mark.parametrize("code", PACKS)
def test_every_pack_answers_every_topic_and_country(code):
    assert RIGHTS.keys(code) == RIGHTS.keys("en")


@pytest.mark.parametrize("code", [c for c in PACKS if c != "en"])
def test_translations_keep_every_number_and_are_translated(code):
    for topic, country in sorted(RIGHTS.keys("en")):
        key = None if country == "general" else country
        english = RIGHTS.answer("en", topic, key)
        translated = RIGHTS.answer(code, topic, key)
        assert translated.language == code and translated.text != english.text, (topic, country)
        assert numbers(translated.text) == numbers(english.text), (code, topic, country)


@pytest.mark.parametrize("code", PACKS)
def test_answers_fit_a_few_sms(code):
    counts = [
        segments(RIGHTS.answer(code, t, None if c == "general" else c).text).count
        for t, c in RIGHTS.keys("en")
    ]
    assert max(counts) <= 4 and statistics.median(counts) <= 3, counts


def test_country_specific_answer_and_general_fallback():
    hk = RIGHTS.answer("en", "fees", "HK")
    assert (hk.country, hk.general) == ("HK", False) and "10%" in hk.text
    assert RIGHTS.answer("en", "fees", "SA").general  # no Saudi content: the general answer
    assert RIGHTS.answer("en", "no_such_topic", "HK") is None
    assert RIGHTS.answer("xx", "fees", "HK").language == "en"  # unknown pack: English


def test_verify_lines_are_not_stated_as_fact():
    """The brief marks Malaysia's fee cap, cross-sector transfers and Taiwan caregivers VERIFY."""
    fees_my = RIGHTS.answer("en", "fees", "MY").text
    assert "caseworker" in fees_my and not re.search(r"\d", fees_my)
    hours_tw = RIGHTS.answer("en", "hours", "TW").text
    assert "caregiver" in hours_tw and "ask a caseworker" in hours_tw
    for topic, country in RIGHTS.keys("en"):
        assert "VERIFY" not in RIGHTS.answer("en", topic, country).text


@pytest.mark.skipif(not BRIEF.exists(), reason="the shared rights brief is not next to the repo")
def test_every_phone_number_has_a_source_in_the_brief():
    brief = BRIEF.read_text()
    for country, contacts in load_contacts().items():
        for contact in contacts:
            assert contact.number in brief, (country, contact.number)
    english = yaml.safe_load((ROOT / "locales" / "en" / "rights.yml").read_text())["answers"]
    for topic, entries in english.items():
        for country, entry in entries.items():
            for number in re.findall(r"\b\d{3,4}(?: \d{3,4}){0,2}\b", entry["text"]):
                if len(number.replace(" ", "")) >= 4 and not number.isdigit() or " " in number:
                    assert number in brief, (topic, country, number)
            for hotline in re.findall(r"hotline (\d{4})", entry["text"]):
                assert hotline in brief


def test_broken_files_are_refused_with_the_file_named(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "rights.yml").write_text("answers:\n  fees:\n    MY: {text: x}\n")
    with pytest.raises(RightsError, match="no general answer"):
        RightsAnswers(tmp_path)
    bad = tmp_path / "contacts.yml"
    bad.write_text("HK:\n  - {name: Police, number: '999'}\n")
    with pytest.raises(ContactsError, match="lacks source"):
        load_contacts(bad)
