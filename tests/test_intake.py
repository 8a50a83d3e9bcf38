"""The grievance form's fields are declared once (bot/intake.py): tied here to domain.yml, to
the cases table, to the form and to the dashboard."""

from __future__ import annotations

from pathlib import Path

import yaml

from actions import form
from actions.dialogue import INTAKE_SLOTS
from bot import intake
from bot.dashboard.labels import LABELS
from bot.store import repository
from bot.store.cases import IDENTIFYING_FIELDS
from bot.store.models import Case

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))


def test_declaration_matches_the_form_in_domain_yml():
    assert list(intake.SLOTS) == DOMAIN["forms"]["grievance_form"]["required_slots"]
    for field in intake.FIELDS:
        slot = DOMAIN["slots"][field.slot]
        conditions = slot["mappings"][0]["conditions"][0]
        assert conditions == {"active_loop": "grievance_form", "requested_slot": field.slot}


def test_declaration_matches_the_cases_table():
    columns = set(Case.__table__.columns.keys())
    assert {f.column for f in intake.FIELDS} <= columns
    stored = tuple(f.column for f in intake.FIELDS if f.column != "country")
    assert stored == repository.INTAKE_FIELDS
    number = {f.column for f in intake.FIELDS if f.kind == "number"}
    yes_no = {f.column for f in intake.FIELDS if f.kind == "yes_no"}
    assert all(Case.__table__.columns[c].type.python_type is int for c in number)
    assert all(Case.__table__.columns[c].type.python_type is bool for c in yes_no)


def test_form_store_and_dashboard_take_their_lists_from_it():
    assert INTAKE_SLOTS == intake.SLOTS
    assert set(form.QUESTIONS) == set(intake.SLOTS)
    yes_no = {f.slot for f in intake.FIELDS if f.kind == "yes_no"}
    assert yes_no == form.YES_NO_SLOTS
    assert set(IDENTIFYING_FIELDS) == {"city", "workplace", "who", "safe_contact"}
    assert set(repository.SEARCHABLE_FIELDS) == {"city", "workplace", "who"}
    assert all(column in LABELS for column in repository.INTAKE_FIELDS)  # the case page's labels
