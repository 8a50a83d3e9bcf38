"""Retention on real SQLite and PostgreSQL, with an injected clock (nothing sleeps): what each
rule deletes and keeps, the legal hold, dry runs, the audit row, Rasa's tracker events, the daily
run, the command, and the legal hold button of the dashboard."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import pytest
from sqlalchemy import func, insert, select, update

from bot import settings as settings_module
from bot.settings import SettingsError
from bot.store import Database, accounts, retention
from bot.store import cases as service
from bot.store import repository as repo
from bot.store.models import (
    Attachment,
    AuditEvent,
    Case,
    CaseEvent,
    CaseTerm,
    Contact,
    Message,
    utcnow,
)
from bot.tracker_store import EVENTS
from tests import test_dashboard as dash
from tests.store_backends import postgres_database
from tests.test_store import KEY

NOW = utcnow()
LATER = NOW + dt.timedelta(days=400)  # the injected clock: what is made now is 400 days old
POLICY = retention.RetentionPolicy()  # the defaults: closed 365, no case 90, tracker 30
WORDS = ("boss took my passport", "Kota Bharu", "ACME Sdn Bhd", "madam hits", "+60111")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'cases.db'}", (lambda: None)
    else:
        url, drop = postgres_database()
    database = Database(url, [KEY])
    database.upgrade()
    yield database
    database.dispose()
    drop()


def contact(s, address, channel="sms"):
    return repo.upsert_contact(
        s, pseudonym=repo.pseudonym("k", channel, address), channel=channel, address=address,
        language="bn", country="MY",
    )  # fmt: skip


def case_with_words(s, address, *, status="closed", held=False):
    """A case with everything personal a case holds: intake, transcript, a file, a note."""
    worker = contact(s, address)
    case, _ = repo.create_case(
        s, contact=worker, category="documents", what_happened=WORDS[0], city=WORDS[1],
        workplace=WORDS[2], ilo_indicators=["retention_of_documents"],
    )  # fmt: skip
    message = repo.add_message(s, contact=worker, case=case, direction="in", text=WORDS[0])
    message.provider_id = f"SM-{address}"
    s.add(Attachment(message=message, content_type="image/jpeg", size=3, sha256="0" * 64,
                     data=b"jpg"))  # fmt: skip
    repo.add_message(s, contact=worker, case=case, direction="out", text="we hear you")
    repo.add_note(s, case=case, note=WORDS[3], actor="cw1")
    steps = {"closed": ["closed"], "resolved": ["in_progress", "resolved"]}.get(status, [status])
    for step in steps:
        repo.change_status(s, case=case, status=step, actor="cw1")
    case.legal_hold = held
    s.flush()
    return case.reference


def chat_without_case(s, address, channel="whatsapp"):
    worker = contact(s, address, channel)
    for text in ("hello", WORDS[4]):
        message = repo.add_message(s, contact=worker, direction="in", text=text)
        message.provider_id = f"SM-{address}-{text[:3]}"
    return worker.id


@pytest.fixture
def world(db):
    """Cases and conversations of every kind, made "now"; the runs happen 400 days later."""
    with db.session() as s:
        refs = {
            "closed": case_with_words(s, "+601"),
            "held": case_with_words(s, "+602", held=True),
            "recent": case_with_words(s, "+603"),
            "open": case_with_words(s, "+604", status="in_progress"),
            "resolved": case_with_words(s, "+605", status="resolved"),
        }
        silent = chat_without_case(s, "+606")
        talking = chat_without_case(s, "+607")
        recent = LATER - dt.timedelta(days=10)
        s.execute(update(Case).where(Case.reference == refs["recent"]).values(closed_at=recent))
        s.execute(update(Contact).where(Contact.id == talking).values(last_seen_at=recent))
        s.execute(update(Message).where(Message.contact_id == talking).values(created_at=recent))
    return {**refs, "silent": silent, "talking": talking}


def snapshot(db) -> dict:
    def count(condition) -> int:
        return s.execute(select(func.count()).where(condition)).scalar_one()

    with db.session() as s:
        return {
            table.__tablename__: s.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (Case, Contact, Message, Attachment, CaseEvent, CaseTerm, AuditEvent)
        } | {
            # an erased message leaves a stub without a contact (a provider's replay is refused)
            "messages": count(Message.contact_id.is_not(None)),
            "purged": count(Case.purged_at.is_not(None)),
            "erased": count(Contact.erased_at.is_not(None)),
            "notes": count(CaseEvent.note.is_not(None)),
        }


def retained(db, reference) -> Case:
    with db.session() as s:
        case = repo.find_case(s, reference=reference)
        _ = case.contact, case.messages, [e.note for e in case.events], case.terms
        return case


# --- the rules -------------------------------------------------------------------------------


def test_a_dry_run_counts_and_deletes_nothing(db, world):
    before = snapshot(db)
    report = retention.run(db, POLICY, now=LATER)
    assert report == {
        "closed": {"days": 365, "cases": 1, "messages": 2, "held": 1},
        "resolved": {"days": None},
        # the silent chat, and the worker of the purged case (no case left, silent 400 days)
        "no_case": {"days": 90, "contacts": 2, "messages": 2},
        "tracker": {"days": 30, "skipped": True},
    }
    assert snapshot(db) == before  # no audit row either


def test_closed_cases_are_purged_after_a_year_and_the_rest_is_kept(db, world):
    before = snapshot(db)
    dry = retention.run(db, POLICY, now=LATER)
    assert retention.run(db, POLICY, now=LATER, apply=True) == dry  # the dry run told the truth

    purged = retained(db, world["closed"])
    assert purged.purged_at is not None and purged.contact is None and purged.secret_hash is None
    assert all(getattr(purged, f) is None for f in repo.INTAKE_FIELDS)
    assert purged.messages == [] and purged.terms == []
    assert [e.note for e in purged.events if e.kind == "note"] == [None]
    assert purged.events[-1].kind == "purged" and purged.events[-1].actor == "retention"
    # What survives erasure survives retention: anonymous facts for the statistics.
    assert (purged.reference, purged.status, purged.category, purged.ilo_indicators) == (
        world["closed"],
        "closed",
        "documents",
        ["retention_of_documents"],
    )
    for kept in ("held", "recent", "open", "resolved"):
        case = retained(db, world[kept])
        assert case.purged_at is None and case.what_happened == WORDS[0], kept
        assert len(case.messages) == 2 and case.contact.address is not None, kept
        assert WORDS[3] in [e.note for e in case.events], kept
    with db.session() as s:
        silent, talking = s.get(Contact, world["silent"]), s.get(Contact, world["talking"])
        assert silent.erased_at is not None and silent.address is None
        assert talking.erased_at is None and talking.address == "+607"
        assert len(talking.messages) == 2
    after = snapshot(db)
    assert before["messages"] - after["messages"] == 2 + 2  # the closed case's, the silent chat's
    assert before["attachments"] - after["attachments"] == 1
    assert (after["purged"], after["erased"]) == (1, 2)
    # Nothing more is due the same day: a second run deletes nothing.
    again = retention.run(db, POLICY, now=LATER, apply=True)
    assert again["closed"]["cases"] == again["no_case"]["contacts"] == 0


def test_a_legal_hold_stops_deletion_until_it_is_cleared(db, world):
    operator = service.Actor.operator("test")
    retention.run(db, POLICY, now=LATER, apply=True)
    assert retained(db, world["held"]).what_happened == WORDS[0]
    with db.session() as s:
        service.set_legal_hold(s, operator, world["held"], False)
    report = retention.run(db, POLICY, now=LATER, apply=True)
    assert report["closed"] == {"days": 365, "cases": 1, "messages": 2, "held": 0}
    assert retained(db, world["held"]).what_happened is None


def test_the_audit_row_carries_counts_only(db, world):
    report = retention.run(db, POLICY, now=LATER, apply=True)
    with db.session() as s:
        row = s.execute(select(AuditEvent).where(AuditEvent.action == "retention")).scalar_one()
        assert (row.actor, row.case_id) == ("retention", None)
        assert row.detail == json.loads(json.dumps(report))
        values = [v for counts in row.detail.values() for v in counts.values()]
    assert all(v is None or isinstance(v, (int, bool)) for v in values)
    assert not any(word in json.dumps(row.detail) for word in (*WORDS, world["closed"]))


def test_resolved_cases_follow_their_own_rule_from_their_last_touch(db, world):
    with db.session() as s:
        other = case_with_words(s, "+608", status="resolved")
        s.execute(
            update(Case).where(Case.reference == other)
            .values(updated_at=LATER - dt.timedelta(days=20))
        )  # fmt: skip
    policy = retention.RetentionPolicy(closed_days=None, resolved_days=30, no_case_days=None)
    report = retention.run(db, policy, now=LATER, apply=True)
    assert report["resolved"] == {"days": 30, "cases": 1, "messages": 2, "held": 0}
    assert retained(db, world["resolved"]).purged_at is not None
    assert retained(db, other).purged_at is None  # touched 20 days ago
    assert retained(db, world["closed"]).purged_at is None  # the closed rule is off


def test_a_second_phone_on_an_open_case_is_not_a_conversation_without_a_case(db, world):
    """A worker who asked about their open case from another phone: that contact filed nothing,
    but its messages are on the case; erasing it would reach the open case."""
    with db.session() as s:
        case = repo.find_case(s, reference=world["open"])
        other = contact(s, "+609")
        repo.add_message(s, contact=other, case=case, direction="in", text=WORDS[1])
    report = retention.run(db, POLICY, now=LATER, apply=True)
    assert report["no_case"]["contacts"] == 2  # the same two as without it
    assert retained(db, world["open"]).what_happened == WORDS[0]
    assert len(retained(db, world["open"]).messages) == 3


def test_twilio_copies_of_deleted_messages_are_handed_on(db, world):
    handed: list[str] = []
    retention.run(db, POLICY, now=LATER, apply=True, provider_copies=handed.extend)
    assert sorted(handed) == ["SM-+601", "SM-+606-+60", "SM-+606-hel"]


# --- the tracker store -----------------------------------------------------------------------


def test_tracker_events_go_only_for_silent_conversations(db):
    """Rasa's events table (its own schema) in the test database; the rule's cutoff is 30 days
    before the injected clock."""
    EVENTS.create(db.engine, checkfirst=True)
    old, recent = NOW.timestamp(), (LATER - dt.timedelta(days=2)).timestamp()
    rows = [("silent", old), ("silent", old + 60), ("talking", old), ("talking", recent)]
    with db.engine.begin() as connection:
        connection.execute(
            insert(EVENTS),
            [{"sender_id": sender, "type_name": "user", "timestamp": at, "data": "{}"}
             for sender, at in rows],
        )  # fmt: skip

    def senders() -> list[str]:
        with db.engine.connect() as connection:
            return sorted(connection.execute(select(EVENTS.c.sender_id)).scalars())

    dry = retention.run(db, POLICY, tracker=db.url, now=LATER)
    assert dry["tracker"] == {"days": 30, "conversations": 1}
    assert senders() == ["silent", "silent", "talking", "talking"]
    retention.run(db, POLICY, tracker=db.url, now=LATER, apply=True)
    assert senders() == ["talking", "talking"]  # every event of it, the old one too
    off = retention.RetentionPolicy(tracker_days=None)
    assert retention.run(db, off, tracker=db.url, now=LATER)["tracker"] == {"days": None}


# --- settings, daily run, command ------------------------------------------------------------


def policy_of(environ: dict) -> retention.RetentionPolicy:
    from bot import settings

    return retention.RetentionPolicy.from_settings(
        settings.load({"HELPLINE_ENV": "development", **environ})
    )


def test_the_policy_comes_from_the_environment():
    assert policy_of({}) == retention.RetentionPolicy(
        closed_days=365, resolved_days=None, no_case_days=90, tracker_days=30
    )
    policy = policy_of({
        "HELPLINE_RETAIN_CLOSED_DAYS": "730", "HELPLINE_RETAIN_RESOLVED_DAYS": "400",
        "HELPLINE_RETAIN_NO_CASE_DAYS": "never", "HELPLINE_RETAIN_TRACKER_DAYS": "0",
    })  # fmt: skip
    assert policy == retention.RetentionPolicy(730, 400, None, None)
    with pytest.raises(SettingsError, match="HELPLINE_RETAIN_CLOSED_DAYS"):
        policy_of({"HELPLINE_RETAIN_CLOSED_DAYS": "a year"})


def test_the_daily_run_applies_with_its_clock(db, world):
    daily = retention.start_daily(
        lambda: Database(db.url, [KEY]), POLICY, lambda: db.url, interval=3600,
        clock=lambda: LATER, delay=0,
    )  # fmt: skip
    try:
        assert daily.ran.wait(60)
    finally:
        daily.stop()
    assert daily.report["closed"]["cases"] == 1
    assert daily.report["tracker"] == {"days": 30, "conversations": 0}  # no events table here
    assert retained(db, world["closed"]).purged_at is not None
    off = retention.RetentionPolicy(None, None, None, None)
    assert retention.start_daily(lambda: db, off, None) is None


def test_helpline_retention_run_is_a_dry_run_unless_applied(db, world, monkeypatch, capsys):
    monkeypatch.setenv("HELPLINE_DATABASE_URL", db.url)
    monkeypatch.setenv("HELPLINE_ENCRYPTION_KEY", KEY)
    for rule, days in (("CLOSED", "0"), ("NO_CASE", "1"), ("TRACKER", "never")):
        monkeypatch.setenv(f"HELPLINE_RETAIN_{rule}_DAYS", days)
    with db.session() as s:  # the command's clock is the real one: the chat is made old
        long_ago = NOW - dt.timedelta(days=400)
        silent = world["silent"]
        s.execute(update(Contact).where(Contact.id == silent).values(last_seen_at=long_ago))
        s.execute(update(Message).where(Message.contact_id == silent).values(created_at=long_ago))
    parser = argparse.ArgumentParser()
    retention.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["retention", "run"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing deleted" in out
    assert "conversations without a case after 1 days: would be deleted: 1 contacts" in out
    assert "closed cases: kept (rule off)" in out
    assert snapshot(db)["erased"] == 0
    args = parser.parse_args(["retention", "run", "--apply"])
    assert args.func(args) == 0
    assert "deleted: 1 contacts, 2 messages" in capsys.readouterr().out
    assert snapshot(db)["erased"] == 1


# --- the dashboard's legal hold button -------------------------------------------------------


@pytest.fixture
def dash_db(tmp_path):
    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    )
    database = Database(settings.database_url, settings.encryption_keys)
    database.upgrade()
    with database.session() as s:
        accounts.add_organisation(s, "Helpline", actor=dash.OP)
        for email, role in (("sup@helpline.org", "supervisor"), ("cw@helpline.org", "caseworker")):
            accounts.add_user(s, email, organisation_name="Helpline", role=role,
                              password=dash.PASSWORD, actor=dash.OP, two_factor=False)  # fmt: skip
    yield database
    database.dispose()


def hold(db, reference) -> tuple[bool, list]:
    with db.session() as s:
        case = repo.find_case(s, reference=reference)
        rows = s.execute(
            select(AuditEvent.actor, AuditEvent.detail).where(AuditEvent.action == "legal_hold")
        ).all()
        return case.legal_hold, [tuple(r) for r in rows]


def test_a_supervisor_sets_and_clears_a_legal_hold_on_the_case_page(dash_db):
    reference = dash.new_case(dash_db)
    client = dash.signed_in(dash_db, "sup@helpline.org")
    page = client.get(f"/cases/{reference}").text
    assert "Put on legal hold" in page
    refused = client.post(f"/cases/{reference}/hold", data={"hold": "on"}, follow_redirects=False)
    assert refused.status_code == 403  # no CSRF token
    assert hold(dash_db, reference) == (False, [])
    form = {"csrf": dash.csrf_of(page), "hold": "on"}
    response = client.post(f"/cases/{reference}/hold", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert hold(dash_db, reference) == (True, [("sup@helpline.org", {"hold": True})])
    page = client.get(f"/cases/{reference}").text
    assert "Clear the legal hold" in page and "legal hold set or cleared" in page  # its trail
    client.post(f"/cases/{reference}/hold", data={**form, "hold": "off"})
    assert hold(dash_db, reference)[0] is False


def test_a_caseworker_cannot_set_a_legal_hold(dash_db):
    reference = dash.new_case(dash_db)
    client = dash.signed_in(dash_db, "cw@helpline.org")
    page = client.get(f"/cases/{reference}").text
    assert "hold-button" not in page
    response = client.post(
        f"/cases/{reference}/hold", data={"csrf": dash.csrf_of(page), "hold": "on"}
    )
    assert "only a supervisor or an admin" in response.text
    assert hold(dash_db, reference) == (False, [])


def test_replicas_run_retention_one_at_a_time_on_postgresql():
    """Every replica starts a daily run; on PostgreSQL an advisory lock lets one do the work."""
    from sqlalchemy import text

    url, drop = postgres_database()
    db = Database(url, [KEY])
    db.upgrade()
    try:
        with db.engine.connect() as other:  # another replica's run holds the lock
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": retention.RETENTION_LOCK})
            with retention.only_one_process(db) as ours:
                assert ours is False
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": retention.RETENTION_LOCK})
        with retention.only_one_process(db) as ours:
            assert ours is True
            with retention.only_one_process(db) as theirs:
                assert theirs is False  # while this one runs
    finally:
        db.dispose()
        drop()
