"""Retention: how long the helpline keeps a worker's words, and the deletion when that ends.

Rules, each a number of days (``RetentionPolicy``; 0 or ``never`` turns a rule off):

- ``closed``: a closed case's personal data (what the worker told us in intake, its transcript
  with attachments, caseworkers' notes, its secret, its link to the worker's contact) goes N days
  after the case was **closed** (``closed_at``). A closed case never reopens, so nothing done to
  it later (a reclassification, a view, a key rotation) extends how long the worker's words are
  kept; a worker who writes again opens a new case.
- ``resolved``: the same for a resolved case N days after it was **last touched**
  (``updated_at``: a worker's message reopens a resolved case and touches it). Off by default:
  a case nobody closed is kept until someone does.
- ``no_case``: a conversation that is not (or no longer) part of a case: a contact with no case
  left, silent N days (no message either way, not seen), is erased as a worker's own erasure
  does it (``repository.erase_contact``): messages, address, pseudonym. This also takes the
  address of a worker whose every case was purged.
- ``tracker``: Rasa's copy of a conversation (the tracker store's ``events``) once it has been
  silent N days (``tracker_store.delete_silent``).

Open cases are never touched. A case on **legal hold** (``Case.legal_hold``, set by a
supervisor or an admin) keeps everything, and keeps its worker's contact too; such cases are
counted as ``held``. The hold protects the case store (the record); Rasa's tracker is only the
dialogue's working state and follows its own rule. What survives a purge is what survives
erasure: reference, category, urgency, status, ILO indicators, language, country, dates.

``helpline retention run`` counts (a dry run); ``--apply`` deletes. ``start_daily`` runs it
with ``--apply`` once a day inside ``helpline run``. Every applied run leaves one audit row
(action ``retention``) with the counts per rule, never content.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from sqlalchemy import and_, delete, exists, func, insert, not_, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bot.store import cases as service
from bot.store import rekey
from bot.store import repository as repo
from bot.store.database import Database
from bot.store.models import (
    Attachment,
    Case,
    CaseEvent,
    CaseTerm,
    Contact,
    Message,
    utcnow,
)

logger = logging.getLogger(__name__)

ACTOR = "retention"  # who deleted, in the audit trail
SYSTEM = service.Actor(label=ACTOR, role="system")
BATCH = 500  # ids per IN (...) list: well under SQLite's limit of bound parameters
DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of data is kept; None: kept until a person deletes it."""

    closed_days: int | None = 365
    resolved_days: int | None = None
    no_case_days: int | None = 90
    tracker_days: int | None = 30

    @classmethod
    def from_settings(cls, settings) -> RetentionPolicy:
        """The policy of ``bot.settings`` (``HELPLINE_RETAIN_*_DAYS``)."""
        return cls(
            closed_days=settings.retain_closed_days,
            resolved_days=settings.retain_resolved_days,
            no_case_days=settings.retain_no_case_days,
            tracker_days=settings.retain_tracker_days,
        )

    @property
    def case_rules(self) -> dict[str, int | None]:
        """Days per case status (the statuses retention may purge)."""
        return {"closed": self.closed_days, "resolved": self.resolved_days}

    @property
    def enabled(self) -> bool:
        return any(d is not None for d in dataclasses.astuple(self))


def _cutoff(now: dt.datetime, days: int) -> dt.datetime:
    return now - dt.timedelta(days=days)


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield list(ids[start : start + BATCH])


# --- cases ------------------------------------------------------------------------------------


def _due(status: str, days: int, now: dt.datetime):
    """The SQL condition: a case of ``status`` whose time is up (hold or not)."""
    closed = status == "closed"
    since = func.coalesce(Case.closed_at, Case.updated_at) if closed else Case.updated_at
    return and_(Case.status == status, Case.purged_at.is_(None), since < _cutoff(now, days))


def _purgeable(policy: RetentionPolicy, now: dt.datetime):
    """Cases retention purges now, or None when no case rule is on."""
    due = [_due(s, d, now) for s, d in policy.case_rules.items() if d is not None]
    return and_(or_(*due), Case.legal_hold.is_(False)) if due else None


def purge_cases(session: Session, case_ids: Sequence[int], *, now: dt.datetime, rule: str) -> int:
    """Deletes the personal data of these cases and marks them purged; returns how many
    messages went. The same fields as a worker's erasure (``repository.erase_contact``): the
    intake (``repository.INTAKE_FIELDS``), the secret, caseworkers' notes (they may quote the
    worker), the link to the worker's contact, and the transcript with its attachments. The
    search index of names goes with the intake."""
    deleted = 0
    emptied = dict.fromkeys(repo.INTAKE_FIELDS)
    # Rows of these cases are not loaded in this session: nothing to synchronise.
    execute = functools.partial(session.execute, execution_options={"synchronize_session": False})
    for ids in _chunks(case_ids):
        messages = select(Message.id).where(Message.case_id.in_(ids))
        execute(delete(Attachment).where(Attachment.message_id.in_(messages)))
        deleted += execute(delete(Message).where(Message.case_id.in_(ids))).rowcount
        execute(update(CaseEvent).where(CaseEvent.case_id.in_(ids)).values(note=None))
        execute(delete(CaseTerm).where(CaseTerm.case_id.in_(ids)))
        execute(
            update(Case)
            .where(Case.id.in_(ids))
            .values(**emptied, secret_hash=None, contact_id=None, purged_at=now)
        )
        session.execute(
            insert(CaseEvent),
            [{"case_id": i, "kind": "purged", "actor": ACTOR, "detail": {"rule": rule},
              "created_at": now} for i in ids],
        )  # fmt: skip
    return deleted


def _twilio_ids(session: Session, condition) -> list[str]:
    """Provider ids of the messages Twilio carried (it keeps a copy of each) among these."""
    return list(
        session.execute(
            select(Message.provider_id).where(
                condition,
                Message.channel.in_(repo.TWILIO_CHANNELS),
                Message.provider_id.is_not(None),
            )
        ).scalars()
    )


def _case_rule(
    session: Session, status: str, days: int | None, now, apply: bool, twilio: list[str]
) -> dict:
    if days is None:
        return {"days": None}
    due = _due(status, days, now)
    ids = list(
        session.execute(
            select(Case.id).where(due, Case.legal_hold.is_(False)).order_by(Case.id)
        ).scalars()
    )
    held = session.execute(
        select(func.count()).select_from(Case).where(due, Case.legal_hold.is_(True))
    ).scalar_one()
    messages = sum(
        session.execute(
            select(func.count()).select_from(Message).where(Message.case_id.in_(chunk))
        ).scalar_one()
        for chunk in _chunks(ids)
    )
    if apply and ids:
        for chunk in _chunks(ids):
            twilio += _twilio_ids(session, Message.case_id.in_(chunk))
        purge_cases(session, ids, now=now, rule=status)
    return {"days": days, "cases": len(ids), "messages": messages, "held": held}


# --- conversations without a case ------------------------------------------------------------


def _silent_contacts(policy: RetentionPolicy, now: dt.datetime):
    """Contacts with no case that outlives this run (neither one they filed nor one their
    messages are on: a case's status asked from another phone), silent ``no_case_days``, with
    something personal left (an address or a message). Erasing one reaches no case."""
    cutoff = _cutoff(now, policy.no_case_days)
    purgeable = _purgeable(policy, now)
    on_case = or_(
        Case.contact_id == Contact.id,
        select(Message.id)
        .where(Message.contact_id == Contact.id, Message.case_id == Case.id)
        .correlate(Contact, Case)
        .exists(),
    )
    kept_case = exists().where(on_case, *([not_(purgeable)] if purgeable is not None else []))
    has_messages = exists().where(Message.contact_id == Contact.id)
    recent = exists().where(Message.contact_id == Contact.id, Message.created_at >= cutoff)
    return select(Contact.id).where(
        Contact.erased_at.is_(None),
        Contact.last_seen_at < cutoff,
        not_(kept_case),
        not_(recent),
        or_(Contact.address.is_not(None), has_messages),
    )


def _no_case_rule(
    session: Session, policy: RetentionPolicy, now, apply: bool, twilio: list[str]
) -> dict:
    if policy.no_case_days is None:
        return {"days": None}
    ids = list(session.execute(_silent_contacts(policy, now).order_by(Contact.id)).scalars())
    # Their messages on a case being purged count with that case (already deleted, when applied).
    messages = sum(
        session.execute(
            select(func.count())
            .select_from(Message)
            .where(Message.contact_id.in_(chunk), Message.case_id.is_(None))
        ).scalar_one()
        for chunk in _chunks(ids)
    )
    if apply:
        for contact_id in ids:
            contact = session.get(Contact, contact_id)
            twilio += repo.erase_contact(session, contact=contact, actor=ACTOR)["twilio"]
    return {"days": policy.no_case_days, "contacts": len(ids), "messages": messages}


# --- Rasa's tracker store --------------------------------------------------------------------


def _tracker_rule(tracker: Engine | str | None, days: int | None, now, apply: bool) -> dict:
    if days is None:
        return {"days": None}
    if not tracker:
        return {"days": days, "skipped": True}  # no SQL tracker store configured
    from bot.tracker_store import delete_silent

    count = delete_silent(tracker, _cutoff(now, days), dry_run=not apply)
    return {"days": days, "conversations": count}


# --- a run -----------------------------------------------------------------------------------


def run(
    db: Database,
    policy: RetentionPolicy,
    *,
    tracker: Engine | str | None = None,
    apply: bool = False,
    now: dt.datetime | None = None,
    provider_copies: Callable[[list[str]], object] | None = None,
) -> dict[str, dict]:
    """Counts per rule of what retention deletes at ``now``; deletes it with ``apply`` (and
    leaves the counts in the audit trail).

    ``tracker``: the tracker store's engine or URL (``rekey.tracker_store_engine`` finds it in
    ``endpoints.yml``), None when there is none. It goes first: if the case store's part then
    fails, nothing of that is deleted and the run can simply be repeated. ``provider_copies``
    receives, once the deletion is committed, the ids of the deleted messages that Twilio
    carried, to delete its copies too."""
    now = now or utcnow()
    tracker_counts = _tracker_rule(tracker, policy.tracker_days, now, apply)
    twilio: list[str] = []
    with db.session() as session:
        report = {
            status: _case_rule(session, status, days, now, apply, twilio)
            for status, days in policy.case_rules.items()
        }
        report["no_case"] = _no_case_rule(session, policy, now, apply, twilio)
        report["tracker"] = tracker_counts
        if apply:
            service.audit(session, SYSTEM, "retention", **report)
    if twilio and provider_copies is not None:
        provider_copies(twilio)
    return report


RULES = {
    "closed": "closed cases",
    "resolved": "resolved cases",
    "no_case": "conversations without a case",
    "tracker": "tracker conversations (Rasa)",
}


def describe(report: Mapping[str, Mapping[str, int | None]], *, applied: bool) -> list[str]:
    """One line per rule: counts only."""
    verb = "deleted" if applied else "would be deleted"
    lines = []
    for rule, counts in report.items():
        name, days = RULES[rule], counts.get("days")
        if days is None:
            lines.append(f"{name}: kept (rule off)")
        elif counts.get("skipped"):
            lines.append(f"{name} after {days} days: skipped (no SQL tracker store configured)")
        else:
            what = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "days")
            lines.append(f"{name} after {days} days: {verb}: {what}")
    return lines


# --- once a day, inside the system -----------------------------------------------------------


Tracker = Engine | str | Callable[[], Engine | str | None] | None


RETENTION_LOCK = 0x72657465  # "rete": PostgreSQL advisory lock held while retention runs


@contextlib.contextmanager
def only_one_process(db: Database):
    """True when this process may run retention now: on PostgreSQL, whoever holds the advisory
    lock (replicas each start a daily run; one does the work); on SQLite, always (one process)."""
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    with db.engine.connect() as connection:
        ours = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": RETENTION_LOCK}
        ).scalar()
        try:
            yield bool(ours)
        finally:
            if ours:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": RETENTION_LOCK})


class Daily:
    """A daemon thread that applies retention every ``interval`` seconds, the first time
    ``delay`` seconds after it starts. It logs counts only; a failed run is logged (its type)
    and tried again the next day."""

    def __init__(
        self,
        db_factory: Callable[[], Database],
        policy: RetentionPolicy,
        tracker: Tracker,
        *,
        interval: float = DAY,
        delay: float = 60.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db_factory, self.policy, self.tracker = db_factory, policy, tracker
        self.interval, self.delay, self.clock = interval, delay, clock
        self.ran = threading.Event()  # set after every run, done or failed
        self.report: dict | None = None  # the latest run's counts
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="helpline-retention", daemon=True)

    def _loop(self) -> None:
        wait = self.delay
        while not self._stop.wait(wait):
            self.run_once()
            wait = self.interval

    def run_once(self) -> None:
        try:
            # A factory finds the tracker store afresh (its SQLite file appears with the first
            # conversation); an engine it made is disposed of here.
            tracker = self.tracker() if callable(self.tracker) else self.tracker
            db = self.db_factory()
            try:
                with only_one_process(db) as ours:
                    if not ours:
                        logger.info("retention: another process is running it")
                        return
                    self.report = run(db, self.policy, tracker=tracker, apply=True,
                                      now=self.clock())  # fmt: skip
            finally:
                db.dispose()
                if callable(self.tracker) and isinstance(tracker, Engine):
                    tracker.dispose()
            for line in describe(self.report, applied=True):
                logger.info("retention: %s", line)
        except Exception as exc:  # noqa: BLE001 - a daily job reports and tries again tomorrow
            logger.error("retention run failed: %s", type(exc).__name__)
        finally:
            self.ran.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.thread.join(timeout)


def start_daily(
    db_factory: Callable[[], Database],
    policy: RetentionPolicy,
    tracker: Tracker,
    interval: float = DAY,
    clock: Callable[[], dt.datetime] = utcnow,
    *,
    delay: float = 60.0,
) -> Daily | None:
    """Starts the daily retention of ``helpline run`` (None when every rule is off).
    ``db_factory`` opens a new ``Database`` for each run (disposed of after it); ``tracker``
    is the tracker store's URL or engine, as for ``run``, or a function that returns one for
    each run (``lambda: rekey.tracker_store_engine(endpoints_file)``)."""
    if not policy.enabled:
        logger.info("retention: every rule is off")
        return None
    daily = Daily(db_factory, policy, tracker, interval=interval, delay=delay, clock=clock)
    daily.thread.start()
    return daily


# --- helpline retention ----------------------------------------------------------------------


def cmd_retention(args: argparse.Namespace) -> int:
    """``helpline retention run [--apply]``: the counts per rule; deletes only with --apply."""
    from bot.settings import load
    from bot.store import open_database

    settings = load()
    policy = RetentionPolicy.from_settings(settings)
    tracker = None
    if policy.tracker_days is not None:
        tracker = args.tracker_url or rekey.tracker_store_engine(args.endpoints)
    db = open_database(settings)
    try:
        report = run(db, policy, tracker=tracker, apply=args.apply)
    finally:
        db.dispose()
        if isinstance(tracker, Engine):
            tracker.dispose()
    header = "retention: applied" if args.apply else "retention: dry run, nothing deleted"
    print(header + ("" if args.apply else " (--apply deletes)"))
    for line in describe(report, applied=args.apply):
        print("  " + line)
    return 0


def register(subparsers) -> None:
    """Adds ``helpline retention run [--apply]`` (for bot/cli.py's ``build_parser``)."""
    p = subparsers.add_parser(
        "retention",
        help="delete what the retention rules (HELPLINE_RETAIN_*_DAYS) say is due;"
        " a dry run unless --apply",
    )
    p.add_argument("action", choices=["run"])
    p.add_argument("--apply", action="store_true", help="delete (default: only count)")
    p.add_argument(
        "--endpoints", default=str(rekey.ROOT / "endpoints.yml"),
        help="where the tracker store is configured (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--tracker-url", help="the tracker store's database URL (instead)")
    p.set_defaults(func=cmd_retention)
