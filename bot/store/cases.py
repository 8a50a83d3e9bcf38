"""The case service: every way a person works a case, for the dashboard and the CLI alike.

Each function takes the acting person (``Actor``) first; what they may see is decided in the
query (``visible``), never by hiding rows after loading them. A case the actor may not see is
``NotFound`` everywhere (the same answer as a case that does not exist), and the attempt is in
the audit log. The CLI acts as ``Actor.operator`` (the deployment's operator at a shell, who can
read the database anyway); the dashboard as the signed-in user.

Who sees a case:

- a partner organisation: cases routed to it (``repository.route_case``) whose worker
  consented to sharing with partner NGOs;
- the deploying organisation: its own cases, every case without that consent, and every
  emergency (``immediate``) at once, whatever the routing.

Roles: a ``caseworker`` works the cases of their organisation and assigns only to themselves;
a ``supervisor`` also assigns to anyone of the organisation and reads the audit trail; an
``admin`` (of the deploying organisation) also manages organisations, users and routing, and sees
the counts of every organisation (contents only of their own).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from sqlalchemy import and_, false, func, not_, or_, select, true
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, selectinload

from bot import intake, taxonomy
from bot.store import repository as repo
from bot.store.models import (
    AuditEvent,
    Case,
    CaseEvent,
    CaseTerm,
    Message,
    Organisation,
    RevealRequest,
    User,
    utcnow,
)
from bot.store.repository import StoreError

ROLES = ("caseworker", "supervisor", "admin")
# Response-time targets (minutes) per urgency, unless the organisation sets its own.
DEFAULT_RESPONSE_MINUTES = {"immediate": 15, "high": 4 * 60, "normal": 2 * 24 * 60}
# Fields a partner organisation does not see when the worker asked not to be identified.
IDENTIFYING_FIELDS = intake.IDENTIFYING
MASK = "••••"
OPEN_STATUSES = ("new", "triaged", "in_progress", "referred")


class NotFound(StoreError):
    """No such case, or not one this person may see (deliberately the same)."""


class Forbidden(StoreError):
    """This person's role may not do that."""


@dataclasses.dataclass(frozen=True)
class Actor:
    label: str  # who, in the audit trail: the user's e-mail, or "operator:<login>"
    role: str  # caseworker, supervisor, admin, or operator
    organisation: str | None = None
    deploying: bool = False
    user_id: int | None = None

    @classmethod
    def operator(cls, login: str) -> Actor:
        return cls(label=f"operator:{login}", role="operator", deploying=True)

    @classmethod
    def of(cls, user: User) -> Actor:
        membership = user.membership
        if membership is None:
            raise Forbidden(f"{user.email} belongs to no organisation")
        return cls(
            label=user.email,
            role=membership.role,
            organisation=membership.organisation.name,
            deploying=membership.organisation.deploying,
            user_id=user.id,
        )

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def can(self, permission: str) -> bool:
        allowed = {
            "assign_others": ("supervisor", "admin", "operator"),
            "audit": ("supervisor", "admin", "operator"),
            "administer": ("admin", "operator"),
            "simulated": ("admin", "operator"),
            "legal_hold": ("supervisor", "admin", "operator"),
        }
        return self.role in allowed[permission]


def visible(actor: Actor):
    """The SQL condition for the cases ``actor`` may see."""
    if actor.is_operator:
        return true()
    if actor.organisation is None:
        return false()
    consented = Case.consent_ngo.is_(True)
    if actor.deploying:
        return or_(
            Case.organisation == actor.organisation,
            Case.organisation.is_(None),
            not_(consented) | Case.consent_ngo.is_(None),
            Case.urgency == "immediate",
        )
    return and_(Case.organisation == actor.organisation, consented)


@dataclasses.dataclass
class Filters:
    status: str | None = None  # a status, or "open" (default: open)
    urgency: str | None = None
    language: str | None = None
    country: str | None = None
    category: str | None = None
    assigned: str | None = None  # "me", "none", or None for anyone
    overdue: bool = False
    search: str | None = None  # a reference, or words of an employer, agent or workplace
    simulated: bool = False  # development: the web simulator's cases instead of real ones


def response_minutes(organisation: Organisation | None) -> dict[str, int]:
    own = (organisation.response_minutes or {}) if organisation is not None else {}
    return {**DEFAULT_RESPONSE_MINUTES, **{k: int(v) for k, v in own.items()}}


def _overdue_condition(minutes: dict[str, int], now: dt.datetime):
    return or_(
        *[
            and_(Case.urgency == urgency, Case.awaiting_since < now - dt.timedelta(minutes=limit))
            for urgency, limit in minutes.items()
        ]
    )


def _organisation(session: Session, actor: Actor) -> Organisation | None:
    if actor.organisation is None:
        return None
    return session.execute(
        select(Organisation).where(Organisation.name == actor.organisation)
    ).scalar_one_or_none()


def queue(
    session: Session, actor: Actor, filters: Filters | None = None, *, limit: int = 50, offset=0
) -> list[Case]:
    """Open cases (by default) this actor may see: most urgent first, then the longest waiting
    for a person, then the oldest."""
    filters = filters or Filters()
    query = select(Case).where(visible(actor))
    if filters.simulated and not actor.can("simulated"):
        raise Forbidden("only an admin sees the simulator's cases")
    query = query.where(Case.simulated.is_(bool(filters.simulated)))
    if filters.status in (None, "", "open"):
        query = query.where(Case.status.in_(OPEN_STATUSES))
    elif filters.status != "any":
        repo._check(filters.status, taxonomy.STATUSES, "status")
        query = query.where(Case.status == filters.status)
    for column, value in (
        (Case.urgency, filters.urgency),
        (Case.language, filters.language),
        (Case.country, filters.country and filters.country.upper()),
        (Case.category, filters.category),
    ):
        if value:
            query = query.where(column == value)
    if filters.assigned == "me":
        query = query.where(Case.assigned_to == actor.label)
    elif filters.assigned == "none":
        query = query.where(Case.assigned_to.is_(None))
    if filters.overdue:
        minutes = response_minutes(_organisation(session, actor))
        query = query.where(_overdue_condition(minutes, utcnow()))
    if filters.search and filters.search.strip():
        query = _search(session, query, filters.search)
    rank = sql_case(
        *[(Case.urgency == u, i) for u, i in repo.URGENCY_RANK.items()],
        else_=len(repo.URGENCY_RANK),
    )
    query = query.order_by(
        rank,
        Case.awaiting_since.is_(None),
        Case.awaiting_since,
        Case.created_at,
        Case.id,
    )
    return list(session.execute(query.limit(limit).offset(offset)).scalars())


def _search(session: Session, query, text: str):
    reference = taxonomy.normalize_case_ref(text)
    if reference:
        return query.where(Case.reference == reference)
    key = session.get_bind().dialect.helpline_search_key
    terms = repo.search_terms(key, text)
    if not terms:
        return query.where(false())
    matching = (
        select(CaseTerm.case_id)
        .where(CaseTerm.term.in_(terms))
        .group_by(CaseTerm.case_id)
        .having(func.count(func.distinct(CaseTerm.term)) == len(terms))
    )
    return query.where(Case.id.in_(matching))


def counts_by_organisation(session: Session, actor: Actor) -> dict[str, dict[str, int]]:
    """Open cases per organisation and urgency: for an admin every organisation (counts only)."""
    if not actor.can("administer"):
        raise Forbidden("only an admin sees every organisation's counts")
    rows = session.execute(
        select(Case.organisation, Case.urgency, func.count())
        .where(Case.status.in_(OPEN_STATUSES), Case.simulated.is_(False))
        .group_by(Case.organisation, Case.urgency)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for organisation, urgency, n in rows:
        out.setdefault(organisation or "-", {})[urgency] = n
    return out


def audit(session: Session, actor: Actor, action: str, case_id=None, **detail) -> None:
    session.add(AuditEvent(actor=actor.label, action=action, case_id=case_id, detail=detail))


def get(session: Session, actor: Actor, reference: str, *, purpose: str = "view") -> Case:
    """The case, if ``actor`` may see it; else ``NotFound`` (and an audited refusal when the
    case exists)."""
    ref = taxonomy.normalize_case_ref(reference or "") or (reference or "").strip().upper()
    case = session.execute(
        select(Case)
        .where(Case.reference == ref, visible(actor))
        .options(selectinload(Case.contact))
    ).scalar_one_or_none()
    if case is None:
        hidden = session.execute(select(Case.id).where(Case.reference == ref)).scalar()
        if hidden is not None:
            audit(session, actor, "access_refused", hidden, purpose=purpose)
        raise NotFound(f"no case {reference!r}")
    return case


def masked(session: Session, actor: Actor, case: Case) -> set[str]:
    """Intake fields hidden from ``actor``: identifying ones, for a partner organisation, when
    the worker did not agree to be identified, unless an admin approved revealing them to it."""
    if actor.is_operator or actor.deploying or case.may_identify is True:
        return set()
    approved = session.execute(
        select(RevealRequest.id).where(
            RevealRequest.case_id == case.id,
            RevealRequest.organisation == actor.organisation,
            RevealRequest.status == "approved",
        )
    ).first()
    return set() if approved else set(IDENTIFYING_FIELDS)


def request_reveal(session: Session, actor: Actor, reference: str, reason: str) -> RevealRequest:
    """A partner's supervisor asks to see the masked fields of a case, with a reason."""
    case = get(session, actor, reference, purpose="reveal")
    if not masked(session, actor, case):
        raise StoreError("nothing on this case is hidden from you")
    if actor.role != "supervisor":
        raise Forbidden("only a supervisor asks to reveal a worker's identity")
    reason = " ".join((reason or "").split())
    if len(reason) < 10:
        raise StoreError("say why you need to see them (10 characters or more)")
    pending = session.execute(
        select(RevealRequest).where(
            RevealRequest.case_id == case.id,
            RevealRequest.organisation == actor.organisation,
            RevealRequest.status == "pending",
        )
    ).scalar()
    if pending is not None:
        raise StoreError("a request is already waiting for an admin")
    request = RevealRequest(case_id=case.id, organisation=actor.organisation,
                            requested_by=actor.label, reason=reason[:1000])  # fmt: skip
    session.add(request)
    session.flush()
    repo._event(session, case, "reveal_requested", actor.label, {"request": request.id})
    return request


def pending_reveals(session: Session, actor: Actor) -> list[tuple[RevealRequest, str]]:
    """Requests waiting for a decision, with their case's reference: for an admin, who decides
    without seeing the case's contents."""
    if not actor.can("administer"):
        raise Forbidden("only an admin decides on revealing a worker's identity")
    return list(
        session.execute(
            select(RevealRequest, Case.reference)
            .join(Case, Case.id == RevealRequest.case_id)
            .where(RevealRequest.status == "pending")
            .order_by(RevealRequest.id)
        ).all()
    )


def decide_reveal(session: Session, actor: Actor, request_id: int, approve: bool) -> RevealRequest:
    if not actor.can("administer"):
        raise Forbidden("only an admin decides on revealing a worker's identity")
    request = session.get(RevealRequest, request_id)
    if request is None or request.status != "pending":
        raise NotFound("no such request waiting")
    request.status = "approved" if approve else "refused"
    request.decided_by, request.decided_at = actor.label, utcnow()
    case = session.get(Case, request.case_id)
    repo._event(session, case, f"reveal_{request.status}", actor.label,
                {"request": request.id, "organisation": request.organisation})  # fmt: skip
    return request


EXPORT_COLUMNS = (
    "reference", "created_at", "urgency", "status", "category", "language", "country",
    "channel", "organisation", "assigned_to", "ilo_indicators",
)  # fmt: skip


def export_rows(session: Session, actor: Actor, filters: Filters | None = None) -> list[dict]:
    """The filtered queue as rows without personal data, for a supervisor's report (audited)."""
    if not actor.can("audit"):
        raise Forbidden("exports are for supervisors")
    rows = []
    for case in queue(session, actor, filters, limit=100_000):
        row = {c: getattr(case, c) for c in EXPORT_COLUMNS}
        row["created_at"] = case.created_at.isoformat(timespec="seconds")
        row["ilo_indicators"] = " ".join(case.ilo_indicators or [])
        rows.append(row)
    audit(session, actor, "export", rows=len(rows))
    return rows


def user_trail(session: Session, actor: Actor, email: str, limit: int = 500) -> list[dict]:
    """What one colleague did (case events and sign-ins), for their supervisor: only colleagues
    of the same organisation, only on cases the supervisor may see; never content."""
    if not actor.can("audit"):
        raise Forbidden("the audit trail is for supervisors")
    if not actor.is_operator and email not in colleagues(session, actor):
        raise NotFound(f"no colleague {email!r}")
    events = session.execute(
        select(CaseEvent.created_at, CaseEvent.kind, Case.reference)
        .join(Case, Case.id == CaseEvent.case_id)
        .where(CaseEvent.actor == email, visible(actor))
        .order_by(CaseEvent.id.desc())
        .limit(limit)
    ).all()
    other = session.execute(
        select(AuditEvent.at, AuditEvent.action)
        .where(AuditEvent.actor == email, AuditEvent.case_id.is_(None))
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    ).all()
    rows = [{"at": at, "what": kind, "case": ref} for at, kind, ref in events]
    rows += [{"at": at, "what": action, "case": None} for at, action in other]
    return sorted(rows, key=lambda r: r["at"], reverse=True)[:limit]


def view(session: Session, actor: Actor, reference: str) -> Case:
    """The case page: audited as a view."""
    case = get(session, actor, reference)
    repo.record_view(session, case=case, actor=actor.label)
    return case


def transcript(session: Session, case: Case) -> list[Message]:
    return list(
        session.execute(
            select(Message)
            .where(Message.case_id == case.id)
            .options(selectinload(Message.attachments))
            .order_by(Message.id)
        ).scalars()
    )


def events(session: Session, actor: Actor, case: Case) -> list[CaseEvent]:
    if not actor.can("audit"):
        raise Forbidden("the audit trail is for supervisors")
    return list(
        session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        ).scalars()
    )


def last_reply_id(session: Session, case: Case) -> int:
    """The newest message by a person on ``case`` (0 if none): a reply written before it was
    sent asks to confirm."""
    return (
        session.execute(
            select(func.max(Message.id)).where(
                Message.case_id == case.id,
                Message.direction == "out",
                Message.author.is_not(None),
                Message.author != "bot",
            )
        ).scalar()
        or 0
    )


class Conflict(StoreError):
    """Someone else replied since the page was opened: confirm before sending."""


def reply(
    session: Session, actor: Actor, reference: str, text: str, *, seen_reply_id: int | None = None
) -> Message:
    case = get(session, actor, reference, purpose="reply")
    if seen_reply_id is not None and last_reply_id(session, case) > seen_reply_id:
        raise Conflict(f"{case.reference}: someone else replied since you opened the case")
    if len(text or "") > 1600:
        raise StoreError("a reply is at most 1600 characters (10 SMS)")
    return repo.queue_reply(session, case=case, text=text, actor=actor.label)


def assign(session: Session, actor: Actor, reference: str, to: str | None) -> Case:
    """Assign to ``to`` (an e-mail, "me", or None to unassign)."""
    case = get(session, actor, reference, purpose="assign")
    target = actor.label if to == "me" else (to or None)
    if target is not None and target != actor.label:
        if not actor.can("assign_others"):
            raise Forbidden("a caseworker assigns cases to themselves only")
        user = session.execute(select(User).where(User.email == target.lower())).scalar()
        if user is None or user.disabled_at is not None or (
            not actor.is_operator
            and (user.membership is None or user.membership.organisation.name != actor.organisation)
        ):
            raise StoreError(f"{target} is not an active colleague")
        target = user.email
    if target != case.assigned_to:
        repo.assign(session, case=case, to=target, actor=actor.label)
    return case


def set_status(session: Session, actor: Actor, reference: str, status: str) -> Case:
    case = get(session, actor, reference, purpose="status")
    repo.change_status(session, case=case, status=status, actor=actor.label)
    return case


def set_urgency(session: Session, actor: Actor, reference: str, urgency: str) -> Case:
    case = get(session, actor, reference, purpose="urgency")
    repo.change_urgency(session, case=case, urgency=urgency, actor=actor.label)
    return case


def classify(
    session: Session, actor: Actor, reference: str, category: str, indicators: Iterable[str]
) -> Case:
    """Correct the category and the ILO indicators."""
    case = get(session, actor, reference, purpose="classify")
    repo._check(category, taxonomy.CASE_CATEGORIES, "category")
    chosen = sorted(set(indicators))
    for indicator in chosen:
        repo._check(indicator, taxonomy.ILO_INDICATORS, "ILO indicator")
    if category != case.category or chosen != sorted(case.ilo_indicators or []):
        repo._event(
            session, case, "classified", actor.label,
            {"from": [case.category, list(case.ilo_indicators or [])], "to": [category, chosen]},
        )  # fmt: skip
        case.category, case.ilo_indicators = category, chosen
    return case


def note(session: Session, actor: Actor, reference: str, text: str) -> CaseEvent:
    case = get(session, actor, reference, purpose="note")
    text = (text or "").strip()
    if not text:
        raise StoreError("a note needs some text")
    return repo.add_note(session, case=case, note=text, actor=actor.label)


def release(session: Session, actor: Actor, reference: str) -> Case:
    """Hand the conversation back to the bot (and clear the danger flag: a person decided)."""
    case = get(session, actor, reference, purpose="release")
    repo.release_handoff(session, case=case, actor=actor.label)
    return case


def set_legal_hold(session: Session, actor: Actor, reference: str, hold: bool) -> Case:
    """Put a case on legal hold (retention deletes nothing of it: bot/store/retention.py) or
    clear the hold: a supervisor's or an admin's decision, in the audit log and the case's
    trail."""
    case = get(session, actor, reference, purpose="legal_hold")
    if not actor.can("legal_hold"):
        raise Forbidden("only a supervisor or an admin sets or clears a legal hold")
    if case.legal_hold != hold:
        case.legal_hold = hold
        audit(session, actor, "legal_hold", case.id, hold=hold)
        repo._event(session, case, "legal_hold", actor.label, {"hold": hold})
    return case


def colleagues(session: Session, actor: Actor) -> list[str]:
    from bot.store.models import Membership

    if actor.organisation is None:
        return []
    return list(
        session.execute(
            select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .where(Organisation.name == actor.organisation, User.disabled_at.is_(None))
            .order_by(User.email)
        ).scalars()
    )
