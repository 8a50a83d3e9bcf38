"""The case store on real SQLite and real PostgreSQL: migrations, encryption, workflow, erasure."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from bot.store import Database
from bot.store import repository as repo
from bot.store.crypto import generate_key
from bot.store.models import Base, Case
from tests.store_backends import postgres_database

KEY = generate_key()


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


def new_contact(session, address="+60 12-345 6789", channel="sms"):
    return repo.upsert_contact(
        session,
        pseudonym=repo.pseudonym("k", channel, address),
        channel=channel,
        address=address,
        language="bn",
        country="MY",
    )


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    db.upgrade()  # idempotent


def test_personal_fields_are_encrypted_at_rest(db):
    with db.session() as s:
        contact = new_contact(s)
        case, _ = repo.create_case(
            s, contact=contact, category="wages", what_happened="boss did not pay 3 months, RM 4500"
        )
        repo.add_message(s, contact=contact, direction="in", text="amar beton dey nai", case=case)
    with db.engine.connect() as connection:
        raw = " ".join(
            str(v)
            for table in ("contacts", "cases", "messages")
            for row in connection.execute(text(f"SELECT * FROM {table}"))
            for v in row
        )
    for secret in ("345 6789", "RM 4500", "beton", "boss did not pay"):
        assert secret not in raw
    with db.session() as s:
        case = repo.find_case(s, reference=case.reference)
        assert case.what_happened == "boss did not pay 3 months, RM 4500"
        assert case.contact.address == "+60 12-345 6789"


def test_the_wrong_key_cannot_read(db):
    with db.session() as s:
        repo.create_case(s, contact=new_contact(s), category="fees", who="agent in Dhaka")
    other = Database(db.url, [generate_key()])
    with pytest.raises(Exception, match="cannot be decrypted"), other.session() as s:
        s.execute(select(Case)).scalars().first().who  # noqa: B018
    other.dispose()


def test_keys_rotate(db):
    with db.session() as s:
        case, _ = repo.create_case(s, contact=None, category="fees", who="agent")
    rotated = Database(db.url, [generate_key(), KEY])  # new key first, old one still reads
    with rotated.session() as s:
        assert repo.find_case(s, reference=case.reference).who == "agent"
    rotated.dispose()


def test_case_reference_and_secret(db):
    with db.session() as s:
        contact = new_contact(s)
        case, secret = repo.create_case(s, contact=contact, category="documents")
        other_phone = new_contact(s, address="+977 98 0000 0000")
        assert case.reference.startswith("HX-") and len(case.reference) == 9
        assert len(secret) == repo.SECRET_DIGITS and secret.isdigit()
        lowered = case.reference.lower().replace("-", " ")
        # the filing phone sees it; another phone only with the secret
        assert repo.case_for_worker(s, reference=lowered, contact=contact) is case
        assert repo.case_for_worker(s, reference=case.reference, contact=other_phone) is None
        wrong = "000000" if secret != "000000" else "111111"
        assert repo.case_by_secret(s, reference=case.reference, secret=wrong) == (None, "wrong")
        assert repo.case_by_secret(s, reference=lowered, secret=secret) == (case, "right")
        later, _ = repo.create_case(s, contact=contact, category="wages")
        assert repo.latest_case(s, contact=contact) is later
        assert repo.latest_case(s, contact=other_phone) is None


def test_status_workflow_and_audit(db):
    with db.session() as s:
        case, _ = repo.create_case(s, contact=new_contact(s), category="wages")
        repo.change_status(s, case=case, status="triaged", actor="cw1")
        repo.assign(s, case=case, to="cw1", actor="cw1")
        repo.change_status(s, case=case, status="in_progress", actor="cw1")
        repo.add_note(s, case=case, note="called the worker", actor="cw1")
        repo.change_status(s, case=case, status="resolved", actor="cw1")
        with pytest.raises(repo.StoreError, match="cannot become new"):
            repo.change_status(s, case=case, status="new", actor="cw1")
        # the worker writes again: the case reopens
        repo.add_message(s, contact=case.contact, direction="in", text="still no pay", case=case)
        assert case.status == "in_progress"
        kinds = [e.kind for e in case.events]
    assert kinds == [
        "created",
        "status_changed",
        "assignment",
        "status_changed",
        "note",
        "status_changed",
        "status_changed",
    ]


def test_queue_order_filters_and_search(db):
    """The case service's queue (bot/store/cases.py), on SQLite and PostgreSQL."""
    from bot.store.cases import Actor, Filters, queue

    operator = Actor.operator("test")
    with db.session() as s:
        c = new_contact(s)
        normal, _ = repo.create_case(s, contact=c, category="wages", urgency="normal")
        immediate, _ = repo.create_case(
            s, contact=c, category="abuse", urgency="immediate", language="ne", country="QA"
        )
        high, _ = repo.create_case(
            s, contact=c, category="documents", urgency="high", who="Công ty Hoa Mai"
        )

        def refs(**filters):
            return [x.reference for x in queue(s, operator, Filters(**filters))]

        assert refs() == [immediate.reference, high.reference, normal.reference]
        assert refs(language="ne") == [immediate.reference]
        assert refs(country="qa") == [immediate.reference]
        assert refs(category="wages") == [normal.reference]
        assert refs(search=high.reference.lower()) == [high.reference]
        assert refs(search="cong ty hoa mai") == [high.reference]
        assert refs(search="hoa lan") == []


def test_invalid_values_are_refused(db):
    with db.session() as s:
        with pytest.raises(repo.StoreError, match="category"):
            repo.create_case(s, contact=None, category="football")
        with pytest.raises(repo.StoreError, match="ILO indicator"):
            repo.create_case(s, contact=None, ilo_indicators=["bad_boss"])
        with pytest.raises(repo.StoreError, match="intake fields"):
            repo.create_case(s, contact=None, phone="+60123")


def test_duplicate_provider_messages_are_refused(db):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.session() as s:
        c = new_contact(s)
        repo.add_message(s, contact=c, direction="in", text="a", provider_id="SM123")
        repo.add_message(s, contact=c, direction="in", text="a", provider_id="SM123")


def test_erasure_keeps_only_anonymous_facts(db):
    with db.session() as s:
        contact = new_contact(s)
        case, _ = repo.create_case(
            s,
            contact=contact,
            category="abuse",
            urgency="high",
            what_happened="madam hits me",
            city="Riyadh",
        )
        repo.add_message(s, contact=contact, direction="in", text="madam hits me", case=case)
        repo.add_message(s, contact=contact, direction="out", text="We are sorry.", case=case)
        repo.add_note(s, case=case, note="worker says madam hits", actor="cw1")
        summary = repo.erase_contact(s, contact=contact)
    assert summary["messages_deleted"] == 2 and summary["cases_anonymised"] == 1
    with db.session() as s:
        case = repo.find_case(s, reference=case.reference)
        assert (case.category, case.urgency, case.country) == ("abuse", "high", "MY")
        assert case.what_happened is None and case.city is None and case.contact is None
        assert all(e.note is None for e in case.events)
        assert case.events[-1].kind == "erased"
        assert repo.count_cases(s, by="category") == {"abuse": 1}
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM messages")).scalar_one() == 0


def test_attachments_are_encrypted_and_erased_with_the_worker(db):
    from bot.store.models import Attachment

    with db.session() as s:
        contact = new_contact(s)
        message = repo.add_message(s, contact=contact, direction="in", text="[photo]")
        s.add(Attachment(message=message, content_type="image/jpeg", size=5, sha256="0" * 64,
                         data=b"\xff\xd8abc"))  # fmt: skip
    with db.engine.connect() as connection:
        raw = connection.exec_driver_sql("select data from attachments").scalar_one()
    assert b"\xff\xd8abc" not in bytes(raw)
    with db.session() as s:
        assert s.query(Attachment).one().data == b"\xff\xd8abc"
        repo.erase_contact(s, contact=s.get(type(contact), contact.id))
    with db.session() as s:
        assert s.query(Attachment).count() == 0


def test_transactions_on_one_sqlite_file_take_turns_in_a_process(tmp_path, monkeypatch):
    """SQLite takes one writer at a time: the process's transactions on a file wait for each
    other in Python instead of sleeping in SQLite's busy handler (docs/benchmarks.md), across
    every ``Database`` on that file; one that waits too long goes ahead anyway."""
    import threading
    import time

    from bot.store import database as database_module

    url = f"sqlite:///{tmp_path}/turns.db"
    first, second = Database(url, [KEY]), Database(url, [KEY])
    first.upgrade()
    inside, order = threading.Event(), []

    def hold() -> None:
        with first.session():
            inside.set()
            time.sleep(0.3)
            order.append("first done")

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    with second.session() as session:
        order.append("second in")
        new_contact(session)
    holder.join()
    assert order == ["first done", "second in"]

    monkeypatch.setattr(database_module, "SQLITE_TURN_WAIT", 0.05)
    inside.clear()
    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    started = time.monotonic()
    with second.session() as session:  # waits 0.05 s, then SQLite's own lock decides
        session.execute(text("SELECT 1"))
    assert time.monotonic() - started < 0.25
    holder.join()
    assert Database("postgresql://127.0.0.1/unused", [KEY])._turn is None
    for database in (first, second):
        database.dispose()
