"""Reading and writing the case store: keyword-only functions that take an explicit session.

Every change to a case leaves a ``CaseEvent`` (who, what, when) for the audit trail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from typing import Any

import regex
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import intake, taxonomy
from bot.store.models import (
    Case,
    CaseEvent,
    CaseTerm,
    Contact,
    Message,
    Organisation,
    ReferenceAttempt,
    RoutingRule,
    utcnow,
)

# The status workflow (taxonomy): new -> triaged -> in_progress -> (referred) -> resolved ->
# closed. An emergency may skip triage; a worker's new message reopens a resolved case.
TRANSITIONS: dict[str, set[str]] = {
    "new": {"triaged", "in_progress", "closed"},
    "triaged": {"in_progress", "referred", "closed"},
    "in_progress": {"referred", "resolved"},
    "referred": {"in_progress", "resolved"},
    "resolved": {"closed", "in_progress"},
    "closed": set(),
}
URGENCY_RANK = {u: i for i, u in enumerate(taxonomy.URGENCIES)}  # immediate first
INTAKE_FIELDS = intake.COLUMNS  # declared once, in bot/intake.py
# A case's secret (status from another phone or channel): 6 digits since issue 12 (4 before;
# those still work). Five wrong secrets for a reference lock it for a day, whoever tries.
SECRET_DIGITS = 6
MAX_SECRET_FAILURES = 5
SECRET_LOCKOUT = dt.timedelta(hours=24)
SECRET_MASK = "••••••"  # what the transcript keeps of a secret shown to or typed by a worker
# Checked when there is no case (or no secret): the same scrypt work, so that the time an answer
# takes never tells whether a reference exists. No secret hashes to it.
_NO_SECRET_HASH = "scrypt$" + base64.b64encode(bytes(16)).decode() + "$"
SIMULATED_PREFIX = "sim:"  # addresses of the web simulator's workers (bot/channels/base.py)
# Intake fields whose words the search index holds (as keyed hashes): names of employers,
# agents and workplaces, and the city.
SEARCHABLE_FIELDS = intake.SEARCHABLE
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")


class StoreError(ValueError):
    """A request the store refuses (unknown status, forbidden transition...)."""


def pseudonym(key: str, channel: str, address: str) -> str:
    """The sender id of a worker: a keyed hash of channel and address, never the address."""
    mac = hmac.new(key.encode(), f"{channel}:{address}".encode(), hashlib.sha256)
    return mac.hexdigest()


def _hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_secret(case: Case | None, secret: str) -> bool:
    """Whether ``secret`` is the case's; one scrypt whether or not there is a case or a secret."""
    stored = (case.secret_hash if case is not None else None) or _NO_SECRET_HASH
    _, salt, _ = stored.split("$")
    expected = _hash_secret((secret or "").strip(), base64.b64decode(salt))
    return stored != _NO_SECRET_HASH and bool(secret) and hmac.compare_digest(expected, stored)


def keyed_hash(session: Session, purpose: str, value: str) -> str:
    """A keyed hash (HMAC-SHA256 with the store's key: the pseudonym key in a deployment) of
    ``value``, for ``purpose``: stands in for an identifier the store must recognise but not
    keep (a case reference being guessed, an erased message's provider id)."""
    key = session.get_bind().dialect.helpline_search_key
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def erased_provider_id(session: Session, channel: str, provider_id: str) -> str:
    """What an erased message keeps of its provider id: a replay is still a duplicate."""
    return keyed_hash(session, f"provider:{channel}", provider_id)


def upsert_contact(
    session: Session,
    *,
    pseudonym: str,
    channel: str,
    address: str | None = None,
    language: str | None = None,
    country: str | None = None,
) -> Contact:
    contact = session.execute(
        select(Contact).where(Contact.pseudonym == pseudonym)
    ).scalar_one_or_none()
    if contact is None:
        contact = Contact(pseudonym=pseudonym, channel=channel)
        session.add(contact)
    if address is not None:
        contact.address = address
    if language:
        contact.language = language
    if country:
        contact.country = country
    contact.last_seen_at = utcnow()
    contact.erased_at = None
    session.flush()
    return contact


def _new_reference(session: Session) -> str:
    for _ in range(50):
        reference = f"HX-{secrets.randbelow(900_000) + 100_000}"
        if session.execute(select(Case.id).where(Case.reference == reference)).first() is None:
            return reference
    raise StoreError("could not find a free case reference")  # pragma: no cover


def create_case(
    session: Session,
    *,
    contact: Contact | None,
    category: str = "other",
    urgency: str = "normal",
    language: str | None = None,
    country: str | None = None,
    channel: str | None = None,
    ilo_indicators: Iterable[str] = (),
    actor: str = "bot",
    **intake: Any,
) -> tuple[Case, str]:
    """A new case and the short secret that, with its reference, shows its status elsewhere."""
    _check(category, taxonomy.CASE_CATEGORIES, "category")
    _check(urgency, taxonomy.URGENCIES, "urgency")
    indicators = sorted(set(ilo_indicators))
    for indicator in indicators:
        _check(indicator, taxonomy.ILO_INDICATORS, "ILO indicator")
    unknown = set(intake) - set(INTAKE_FIELDS)
    if unknown:
        raise StoreError(f"unknown intake fields: {', '.join(sorted(unknown))}")
    secret = "".join(str(secrets.randbelow(10)) for _ in range(SECRET_DIGITS))
    address = contact.address if contact is not None else None
    case = Case(
        simulated=bool(address and address.startswith(SIMULATED_PREFIX)),
        awaiting_since=utcnow(),  # a worker's message opened it
        last_inbound_at=utcnow() if contact is not None else None,
        reference=_new_reference(session),
        secret_hash=_hash_secret(secret),
        contact=contact,
        category=category,
        urgency=urgency,
        status="new",
        ilo_indicators=indicators,
        language=language or (contact.language if contact else None),
        country=country or (contact.country if contact else None),
        channel=channel or (contact.channel if contact else None),
        **intake,
    )
    session.add(case)
    # The reply that gives the worker this secret is masked in the transcript in this session:
    # it is known here, so no scrypt is needed to recognise it (``mask_secrets``). Kept in the
    # session's memory only, for as long as the session lives (one turn).
    session.info.setdefault(_ISSUED_SECRETS, {})[case.reference] = secret
    route_case(session, case=case)
    session.flush()
    _event(session, case, "created", actor, {"category": category, "urgency": urgency})
    return case, secret


def route_case(session: Session, *, case: Case) -> str | None:
    """The organisation a case goes to: the first routing rule that matches its country,
    language and category, else the default organisation, else the deploying one. Who may see
    it is decided when it is read (bot/store/cases.py): a partner only with the worker's consent,
    the deploying organisation without it and for every emergency."""
    with session.no_autoflush:
        for rule in session.execute(
            select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id)
        ).scalars():
            if (
                (rule.country is None or rule.country == case.country)
                and (rule.language is None or rule.language == case.language)
                and (rule.category is None or rule.category == case.category)
            ):
                case.organisation = rule.organisation.name
                return case.organisation
        fallback = session.execute(
            select(Organisation.name)
            .order_by(
                Organisation.is_default.desc(), Organisation.deploying.desc(), Organisation.id
            )
            .limit(1)
        ).scalar_one_or_none()
    case.organisation = fallback
    return fallback


def normalise_words(text: str) -> list[str]:
    """Words as the search index keeps them: case-folded, without accents (Cong ty = Công ty),
    at least two characters."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(c for c in text if not (unicodedata.category(c) == "Mn" and ord(c) < 0x0370))
    return [w for w in _WORD.findall(unicodedata.normalize("NFC", text)) if len(w) >= 2]


def search_terms(key: bytes, text: str) -> list[str]:
    """Keyed hashes of the words of ``text``: what the index stores, and what a search looks up.
    Without the key nobody can test a guessed name against a stolen database."""
    return sorted(
        {hmac.new(key, w.encode(), hashlib.sha256).hexdigest()[:32] for w in normalise_words(text)}
    )


@sa_event.listens_for(Session, "before_flush")
def _index_case_names(session: Session, _context, _instances) -> None:
    """Keeps ``case_terms`` in step with the searchable intake fields of new and changed cases."""
    changed = [
        obj
        for obj in (*session.new, *session.dirty)
        if isinstance(obj, Case)
        and (
            obj in session.new
            or any(_history_changed(obj, field) for field in SEARCHABLE_FIELDS)
        )
    ]
    if not changed:
        return
    key = session.get_bind().dialect.helpline_search_key
    for case in changed:
        text = " ".join(str(getattr(case, f) or "") for f in SEARCHABLE_FIELDS)
        case.terms = [CaseTerm(term=t) for t in search_terms(key, text)]


def _history_changed(obj, field: str) -> bool:
    from sqlalchemy import inspect

    return inspect(obj).attrs[field].history.has_changes()


def _check(value: str, allowed: Iterable[str], what: str) -> None:
    if value not in allowed:
        raise StoreError(f"unknown {what} {value!r}")


def _event(session, case, kind, actor, detail=None, note=None) -> CaseEvent:
    event = CaseEvent(case=case, kind=kind, actor=actor, detail=detail or {}, note=note)
    session.add(event)
    session.flush()
    return event


def add_message(
    session: Session,
    *,
    contact: Contact,
    direction: str,
    text: str,
    channel: str | None = None,
    case: Case | None = None,
    language: str | None = None,
    intent: str | None = None,
    author: str | None = None,
    provider_id: str | None = None,
    **queue_fields,
) -> Message:
    """A message on the worker's transcript; ``queue_fields`` (the queue's columns: status,
    next attempt, reply_to_id...) are set before it is inserted, in the same statement."""
    if direction not in ("in", "out"):
        raise StoreError("direction must be 'in' or 'out'")
    message = Message(
        contact=contact,
        case=case,
        direction=direction,
        text=text,
        channel=channel or contact.channel,
        language=language,
        intent=intent,
        author=author,
        provider_id=provider_id,
        **queue_fields,
    )
    session.add(message)
    if case is not None and direction == "in":
        worker_wrote(session, case=case)
    session.flush()
    return message


def worker_wrote(session: Session, *, case: Case) -> None:
    """A worker's message on ``case``: they wait for a person from now (unless already waiting),
    and a resolved case opens again."""
    now = utcnow()
    case.last_inbound_at = now
    if case.awaiting_since is None:
        case.awaiting_since = now
    if case.status == "resolved":
        change_status(session, case=case, status="in_progress", actor="worker")


def change_status(session: Session, *, case: Case, status: str, actor: str) -> None:
    _check(status, taxonomy.STATUSES, "status")
    if status == case.status:
        return
    if status not in TRANSITIONS[case.status]:
        raise StoreError(f"a {case.status} case cannot become {status}")
    _event(session, case, "status_changed", actor, {"from": case.status, "to": status})
    case.status = status
    case.closed_at = utcnow() if status == "closed" else None


def change_urgency(session: Session, *, case: Case, urgency: str, actor: str) -> None:
    _check(urgency, taxonomy.URGENCIES, "urgency")
    if urgency != case.urgency:
        _event(session, case, "urgency_changed", actor, {"from": case.urgency, "to": urgency})
        case.urgency = urgency


def assign(session: Session, *, case: Case, to: str | None, actor: str) -> None:
    _event(session, case, "assignment", actor, {"from": case.assigned_to, "to": to})
    case.assigned_to = to


def release_handoff(session: Session, *, case: Case, actor: str) -> None:
    """A caseworker hands the conversation back to the bot, and clears the danger flag: only a
    person may say that a worker is no longer in danger."""
    if case.handoff or case.danger_kind:
        _event(session, case, "handoff_released", actor, {"danger_cleared": case.danger_kind})
        case.handoff = False
        case.danger_kind = None


def flag_danger(session: Session, *, case: Case, kind: str, actor: str = "bot") -> None:
    """The worker of ``case`` is in danger: immediate, handed to a person, flagged (the kind only
    in the audit trail, never the worker's words)."""
    change_urgency(session, case=case, urgency="immediate", actor=actor)
    if case.danger_kind != kind:
        _event(session, case, "danger", actor, {"kind": kind, "was": case.danger_kind})
        case.danger_kind = kind
    case.handoff = True


def worker_says_safe(session: Session, *, case: Case) -> None:
    """The worker says they are safe: the bot talks again; the flag stays for a person."""
    _event(session, case, "worker_says_safe", "worker", {"kind": case.danger_kind})
    case.handoff = False


def flagged_case(session: Session, *, contact: Contact) -> Case | None:
    """The worker's open case flagged as danger that no person has cleared yet."""
    return session.execute(
        select(Case)
        .where(
            Case.contact_id == contact.id,
            Case.danger_kind.is_not(None),
            Case.status.not_in(("resolved", "closed")),
        )
        .order_by(Case.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def add_note(session: Session, *, case: Case, note: str, actor: str) -> CaseEvent:
    return _event(session, case, "note", actor, note=note)


# Channels whose queue (bot/channels/inbox.py) delivers what is queued here.
REPLY_CHANNELS = ("telegram", "sms", "whatsapp")


def queue_reply(session: Session, *, case: Case, text: str, actor: str) -> Message:
    """A caseworker's reply to the worker of ``case``, through the channel the worker used: it is
    queued like the bot's replies and the channels' queue sends it (held while the worker has
    sent STOP, or while WhatsApp's window is closed). In the transcript and the audit trail."""
    text = (text or "").strip()
    if not text:
        raise StoreError("a reply needs some text")
    contact = case.contact
    if contact is None or contact.erased_at is not None or not contact.address:
        raise StoreError(f"{case.reference}: the worker erased their data or cannot be reached")
    if contact.channel not in REPLY_CHANNELS:
        raise StoreError(f"{case.reference}: no channel to reply on ({contact.channel})")
    message = add_message(
        session, contact=contact, case=case, direction="out", text=text,
        language=case.language, author=actor,
    )  # fmt: skip
    message.status = "queued"
    message.next_attempt_at = utcnow()
    case.awaiting_since = None  # a person answered
    _event(session, case, "reply", actor, {"message": message.id, "channel": contact.channel})
    return message


def record_view(session: Session, *, case: Case, actor: str) -> None:
    _event(session, case, "viewed", actor)


def find_case(session: Session, *, reference: str) -> Case | None:
    reference = taxonomy.normalize_case_ref(reference) or reference.strip().upper()
    return session.execute(select(Case).where(Case.reference == reference)).scalar_one_or_none()


def case_for_worker(session: Session, *, reference: str, contact: Contact | None) -> Case | None:
    """The case, if it was filed from this worker's phone (from another one: ``case_by_secret``)."""
    case = find_case(session, reference=reference)
    if case is not None and contact is not None and case.contact_id == contact.id:
        return case
    return None


def _reference_key(session: Session, reference: str) -> str:
    normalised = taxonomy.normalize_case_ref(reference) or reference.strip().upper()
    return keyed_hash(session, "reference", normalised)


def _later(when: dt.datetime | None) -> bool:
    """``when`` is still to come (SQLite gives naive datetimes back: they are UTC)."""
    if when is None:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)) > utcnow()


def reference_locked(session: Session, *, reference: str) -> bool:
    """Too many wrong secrets for this reference lately (whether or not it exists)."""
    attempt = session.get(ReferenceAttempt, _reference_key(session, reference))
    return attempt is not None and _later(attempt.locked_until)


def case_by_secret(session: Session, *, reference: str, secret: str) -> tuple[Case | None, str]:
    """A case seen from another phone or channel: the case when ``secret`` is its secret, and
    the outcome: ``right``, ``wrong``, ``locked`` (locked before: nothing was checked) or
    ``locked_now`` (this wrong secret was the last one allowed).

    Wrong secrets are counted per reference in the store, whoever sends them (a new phone or
    sender id starts no new count): the ``MAX_SECRET_FAILURES``-th locks the reference for
    ``SECRET_LOCKOUT``. A reference that does not exist is counted and locked the same way, and
    every outcome costs one scrypt, so neither the answer nor its time tells whether it exists.
    """
    key = _reference_key(session, reference)
    attempt = session.get(ReferenceAttempt, key, with_for_update=True)
    case = find_case(session, reference=reference)
    if attempt is not None and _later(attempt.locked_until):
        check_secret(None, secret)  # the time a check takes
        return None, "locked"
    if check_secret(case, secret):
        if attempt is not None:
            session.delete(attempt)
        return case, "right"
    if attempt is None:
        attempt = ReferenceAttempt(reference_hash=key, failures=0)
        session.add(attempt)
    attempt.failures = (attempt.failures or 0) + 1
    attempt.updated_at = utcnow()
    if attempt.failures < MAX_SECRET_FAILURES:
        return None, "wrong"
    attempt.failures = 0
    attempt.locked_until = utcnow() + SECRET_LOCKOUT
    return None, "locked_now"


_DIGITS = regex.compile(r"(?<!\d)\d{4,8}(?!\d)")
_ISSUED_SECRETS = "helpline_issued_secrets"  # Session.info: reference -> secret issued in it


def names_a_case(text: str | None) -> bool:
    """Whether ``text`` names a case: only such a text can carry a case's secret
    (``mask_secrets`` has nothing to mask in any other)."""
    return bool(text and taxonomy.CASE_REF_PATTERN.search(text))


def mask_secrets(session: Session, text: str | None) -> str | None:
    """``text`` with the secret of any case it names masked (``SECRET_MASK``): what the
    transcript keeps of a reply that gave a worker their case's secret. Only numbers in a text
    that names a case are checked, against that case's secret: directly for a case created in
    this session (``create_case`` keeps its secret in the session's memory), else one scrypt
    each."""
    if not text:
        return text
    references = list(taxonomy.CASE_REF_PATTERN.finditer(text))
    cases = [find_case(session, reference=r.group(0)) for r in references]
    cases = [c for c in cases if c is not None and c.secret_hash]
    if not cases:
        return text
    issued = session.info.get(_ISSUED_SECRETS, {})

    def is_secret(case: Case, number: str) -> bool:
        if case.reference in issued:  # issued in this session: no scrypt needed
            return hmac.compare_digest(issued[case.reference], number)
        return check_secret(case, number)

    for number in reversed(list(_DIGITS.finditer(text))):
        if any(r.start() <= number.start() < r.end() for r in references):
            continue
        if any(is_secret(case, number.group(0)) for case in cases):
            text = text[: number.start()] + SECRET_MASK + text[number.end() :]
    return text


def latest_case(
    session: Session, *, contact: Contact, open_or_resolved: bool = False
) -> Case | None:
    if contact.id is None:
        return None
    query = select(Case).where(Case.contact_id == contact.id)
    if open_or_resolved:
        query = query.where(Case.status != "closed")
    return session.execute(query.order_by(Case.id.desc()).limit(1)).scalar_one_or_none()


def count_cases(session: Session, *, by: str = "category") -> dict[str, int]:
    """Anonymous counts (what survives erasure)."""
    column = getattr(Case, by)
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    return {str(k): n for k, n in rows}


# Channels whose provider (Twilio) keeps a copy of every message it carried, which its API deletes.
TWILIO_CHANNELS = ("sms", "whatsapp")


def linked_contacts(session: Session, contact: Contact) -> list[Contact]:
    """The worker's contacts on every channel and phone their cases link: the contact that filed
    a case and every contact whose messages are on it (the case's status asked from another phone
    with the secret, ``actions.dialogue.check_secret``), followed from case to case."""
    ids, case_ids = {contact.id}, set()
    while True:
        case_ids |= set(
            session.execute(select(Case.id).where(Case.contact_id.in_(ids))).scalars()
        ) | set(
            session.execute(
                select(Message.case_id).where(
                    Message.contact_id.in_(ids), Message.case_id.is_not(None)
                )
            ).scalars()
        )
        found = set(
            session.execute(
                select(Case.contact_id).where(Case.id.in_(case_ids), Case.contact_id.is_not(None))
            ).scalars()
        ) | set(
            session.execute(
                select(Message.contact_id).where(
                    Message.case_id.in_(case_ids), Message.contact_id.is_not(None)
                )
            ).scalars()
        )
        if found <= ids:
            break
        ids |= found
    return [contact] + [session.get(Contact, i) for i in sorted(ids - {contact.id})]


def erase_contact(session: Session, *, contact: Contact, actor: str = "worker") -> dict:
    """Delete a worker's personal data; keep anonymous facts so the case still counts.

    The worker is every contact their cases link (``linked_contacts``). Deleted: their
    addresses and what the contact rows knew of them, every message of theirs and to them with
    its files, everything they told us in intake, notes that may quote them, the secrets of their
    cases and the link from their cases to them. An inbound message leaves only a keyed hash of
    its provider id (``erased_provider_id``), with no contact, case, text or time of its own, so
    that the provider's replay of it is still refused as a duplicate and cannot bring the worker
    back. Kept: each case's reference, category, urgency, status, ILO indicators, language,
    country and dates, for anonymous statistics and for partners already acting on a case.

    Returns counts and ``twilio``: the provider ids of the messages Twilio carried, whose copies
    at Twilio the caller deletes (``bot.channels.twilio.TwilioSender.erase_stored``).
    """
    contacts = linked_contacts(session, contact)
    ids = [c.id for c in contacts]
    cases = list(session.execute(select(Case).where(Case.contact_id.in_(ids))).scalars())
    messages = list(session.execute(select(Message).where(Message.contact_id.in_(ids))).scalars())
    twilio, erased_at = [], utcnow()
    for message in messages:
        if message.provider_id and message.channel in TWILIO_CHANNELS:
            twilio.append(message.provider_id)
        if message.provider_id and message.direction == "in":
            session.add(
                Message(
                    channel=message.channel, direction="in", status="erased",
                    provider_id=erased_provider_id(session, message.channel, message.provider_id),
                    created_at=erased_at,
                )
            )  # fmt: skip
        session.delete(message)
    for case in cases:
        for field in INTAKE_FIELDS:
            setattr(case, field, None)
        case.secret_hash = None
        case.contact = None
        for event in case.events:
            event.note = None
        attempt = session.get(ReferenceAttempt, _reference_key(session, case.reference))
        if attempt is not None:
            session.delete(attempt)
        _event(session, case, "erased", actor)
    for erased in contacts:
        erased.address = erased.language = erased.country = erased.last_inbound_at = None
        erased.sms_fallback = None
        erased.sms_plain = erased.sms_plain_offered = False
        erased.erased_at = erased.last_seen_at = erased_at
        erased.pseudonym = f"erased:{erased.id}:{secrets.token_hex(8)}"
    session.flush()
    return {
        "messages_deleted": len(messages),
        "cases_anonymised": len(cases),
        "contacts_erased": len(contacts),
        "twilio": twilio,
        "kept": ["reference", "category", "urgency", "status", "country", "language", "dates"],
    }
