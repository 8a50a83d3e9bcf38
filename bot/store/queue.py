"""Every query on the channels' queue: the messages table as a queue, and per-worker leases.

The queue is the ``messages`` table itself (an inbound message is ``pending`` until Rasa has
answered it; a reply is ``queued`` until the provider took it). Several processes, on one
machine or many, may accept webhooks and work the queue against one database. What keeps them
apart is a **lease per worker** (``queue_leases``): a process handles a worker's messages only
while it holds that worker's lease, so a worker's messages are processed one at a time and in
the order received, and their replies are sent by one process, in order. A lease expires: a
process that dies holding one loses it after ``lease`` seconds and another takes the worker over.
A process that lost its lease (it stalled longer than the lease) finds out when it commits a
turn's replies (``fence``): that commit is refused and the new holder answers instead.

Why not ``SELECT ... FOR UPDATE SKIP LOCKED`` on message rows: it hands a worker's second
message to a second process while the first is still in Rasa, which breaks per-worker order.
Why not a PostgreSQL advisory lock per worker: it lives as long as a database connection, so a
turn (seconds of Rasa) would hold a pooled connection, and SQLite has no such lock; a lease row
works the same on both engines (``docs/scaling.md`` says more, and which queue libraries were
considered).

Times are the processes' clocks (UTC): machines sharing a database must keep them in sync (NTP);
the lease (30 s by default) is far longer than any usual skew.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from bot.store.models import Contact, Message, QueueLease, utcnow

# Rasa's message_id of a queued message: helpline-<messages.id>. The actions find the stored
# message of a turn by it (actions/dialogue.py), the queue sets it (bot/channels/bridge.py).
MESSAGE_ID_PREFIX = "helpline-"


def rasa_message_id(message_id: int) -> str:
    return f"{MESSAGE_ID_PREFIX}{message_id}"


def queued_message_id(rasa_id: str | None) -> int | None:
    """The ``messages.id`` in a Rasa message_id the queue set, or None for any other id."""
    rasa_id = str(rasa_id or "")
    digits = rasa_id[len(MESSAGE_ID_PREFIX):]
    return int(digits) if rasa_id.startswith(MESSAGE_ID_PREFIX) and digits.isdigit() else None


def new_owner() -> str:
    """This process's name in the lease table: host, process id and a random part (a restarted
    process with the same pid is another owner). Names no worker."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"


def aware(when: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back; they are UTC."""
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def is_later(when: dt.datetime | None) -> bool:
    """``when`` is still in the future."""
    return when is not None and aware(when) > utcnow()


# --- accepting ---------------------------------------------------------------------------------
def already_accepted(session: Session, channel: str, provider_ids: tuple[str, ...]) -> bool:
    """A message with one of these provider ids (its own, or the keyed hash an erased worker's
    message keeps) is already stored: a provider's retry."""
    return (
        session.execute(
            select(Message.id).where(
                Message.channel == channel, Message.provider_id.in_(provider_ids)
            )
        ).first()
        is not None
    )


def release_window_held(session: Session, contact_id: int) -> None:
    """The worker wrote on WhatsApp: replies held by the closed 24-hour window go out again."""
    session.execute(
        update(Message)
        .where(
            Message.contact_id == contact_id,
            Message.status == "held",
            Message.error == "twilio_63016",
        )
        .values(status="queued", next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def pending(media: list | None, chat_message_id: str | None) -> dict:
    """The queue's columns of an inbound message just accepted (``repository.add_message``
    sets them before the insert: one statement)."""
    return {"status": "pending", "next_attempt_at": utcnow(), "media": media or None,
            "chat_message_id": chat_message_id}  # fmt: skip


def queued_reply(reply_to_id: int) -> dict:
    """The queue's columns of a reply to send, due now (set before the insert)."""
    return {"status": "queued", "reply_to_id": reply_to_id, "next_attempt_at": utcnow()}


# --- reading the queue -------------------------------------------------------------------------
def first(session: Session, contact_id: int, direction: str, status: str) -> Message | None:
    """The oldest of a worker's messages in a queue (inbound pending, outbound queued), with
    its contact in the same query (the turn and the send both need it)."""
    return session.execute(
        select(Message)
        .options(joinedload(Message.contact))
        .where(
            Message.contact_id == contact_id,
            Message.direction == direction,
            Message.status == status,
        )
        .order_by(Message.id)
        .limit(1)
    ).scalar_one_or_none()


def first_pending(session: Session, contact_id: int) -> Message | None:
    return first(session, contact_id, "in", "pending")


def first_queued(session: Session, contact_id: int) -> Message | None:
    return first(session, contact_id, "out", "queued")


def _due(now: dt.datetime):
    return (
        Message.status.in_(("pending", "queued")),
        or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
    )


def _oldest(direction: str, status: str):
    return (
        select(func.min(Message.id))
        .where(
            Message.contact_id == bindparam("contact_id"),
            Message.direction == direction,
            Message.status == status,
        )
        .scalar_subquery()
    )


# When the worker's oldest pending message and oldest queued reply are due: one statement,
# two columns, nothing decrypted (it runs at the end of every turn).
_OLDEST_DUE_TIMES = select(Message.next_attempt_at).where(
    Message.id.in_([_oldest("in", "pending"), _oldest("out", "queued")])
)


def has_due(session: Session, contact_id: int) -> bool:
    """The worker's oldest pending message or oldest queued reply is due now (a later one
    waits behind it, so it does not count)."""
    times = session.execute(_OLDEST_DUE_TIMES, {"contact_id": contact_id}).scalars()
    return any(not is_later(when) for when in times)


def due_contacts(session: Session, limit: int, skip=frozenset()) -> list[int]:
    """Up to ``limit`` workers with something due now and no live lease, oldest message first
    (a backlog drains in arrival order, ``limit`` workers at a time)."""
    now = utcnow()
    leased = select(QueueLease.contact_id).where(QueueLease.expires_at > now)
    rows = session.execute(
        select(Message.contact_id, func.min(Message.id).label("oldest"))
        .where(*_due(now), Message.contact_id.not_in(leased))
        .group_by(Message.contact_id)
        .order_by("oldest")
        .limit(limit + len(skip))
    )
    return [cid for cid, _ in rows if cid not in skip][:limit]


def mark_sent(session: Session, out_id: int, provider_id: str | None) -> None:
    """A reply the provider took, in one statement (the reply is not read back)."""
    values = {"status": "sent", "error": None}
    if provider_id:
        values["provider_id"] = provider_id
    session.execute(
        update(Message).where(Message.id == out_id).values(**values)
        .execution_options(synchronize_session=False)
    )  # fmt: skip


def reply_of(session: Session, message_id: int, author: str) -> Message | None:
    """The reply by ``author`` already queued for this message (once per message)."""
    return session.execute(
        select(Message).where(Message.reply_to_id == message_id, Message.author == author)
    ).scalar_one_or_none()


def chat_messages(session: Session, contact_id: int, channel: str) -> list[Message]:
    """Every message of one worker on one channel (the quick exit picks what it may delete)."""
    return list(
        session.execute(
            select(Message).where(Message.contact_id == contact_id, Message.channel == channel)
        ).scalars()
    )


def reply_by_provider_id(session: Session, provider_id: str) -> Message | None:
    """The reply a provider's delivery-status callback is about."""
    return session.execute(
        select(Message).where(Message.provider_id == provider_id, Message.direction == "out")
    ).scalar_one_or_none()


def status_counts(session: Session, contact_id: int) -> list[tuple[str, str, int]]:
    """(direction, status, count) of one worker's messages (the simulator's queue panel)."""
    return list(
        session.execute(
            select(Message.direction, Message.status, func.count())
            .where(Message.contact_id == contact_id)
            .group_by(Message.direction, Message.status)
        )
    )


def contact_by_pseudonym(session: Session, pseudonym: str) -> Contact | None:
    return session.execute(
        select(Contact).where(Contact.pseudonym == pseudonym)
    ).scalar_one_or_none()


def without_case(session: Session, contact_id: int) -> list[Message]:
    """A worker's messages not yet on a case (the dialogue attaches them to a new one)."""
    return list(
        session.execute(
            select(Message).where(Message.contact_id == contact_id, Message.case_id.is_(None))
        ).scalars()
    )


def stored_for_turn(session: Session, contact_id: int, rasa_id: str | None) -> Message | None:
    """The worker's message of a Rasa turn, as the queue stored it (before the NLU ran)."""
    message_id = queued_message_id(rasa_id)
    if message_id is None:
        return None
    message = session.get(Message, message_id)
    return message if message is not None and message.contact_id == contact_id else None


def in_transcript(session: Session, provider_id: str) -> bool:
    return (
        session.execute(select(Message.id).where(Message.provider_id == provider_id)).first()
        is not None
    )


# --- leases ------------------------------------------------------------------------------------
def _insert(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def claim(session: Session, contact_id: int, owner: str, seconds: float) -> bool:
    """Takes the worker's lease for ``seconds``: True when it is free, expired or already ours.
    One statement (an insert that updates only an expired or own row), so two processes
    claiming at once cannot both win."""
    now = utcnow()
    insert = _insert(session)
    statement = insert(QueueLease).values(
        contact_id=contact_id, owner=owner, expires_at=now + dt.timedelta(seconds=seconds)
    )
    statement = statement.on_conflict_do_update(
        index_elements=[QueueLease.contact_id],
        set_={"owner": statement.excluded.owner, "expires_at": statement.excluded.expires_at},
        where=or_(QueueLease.expires_at <= now, QueueLease.owner == owner),
    )
    return session.execute(statement).rowcount == 1


def renew(session: Session, contact_id: int, owner: str, seconds: float) -> bool:
    """Extends our lease; False when it is no longer ours (it expired and another took it).
    Inside the transaction that commits a turn's replies this is the fence: on PostgreSQL the
    row stays locked until the commit, so nobody takes the worker over in between."""
    result = session.execute(
        update(QueueLease)
        .where(QueueLease.contact_id == contact_id, QueueLease.owner == owner)
        .values(expires_at=utcnow() + dt.timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


fence = renew


def release(session: Session, contact_id: int, owner: str) -> None:
    """Lets the worker go (the row is deleted: the table holds only workers in progress)."""
    session.execute(
        delete(QueueLease)
        .where(QueueLease.contact_id == contact_id, QueueLease.owner == owner)
        .execution_options(synchronize_session=False)
    )


def release_all(session: Session, owner: str) -> int:
    """Every lease of this process (a clean shutdown: no one waits for them to expire)."""
    return session.execute(
        delete(QueueLease)
        .where(QueueLease.owner == owner)
        .execution_options(synchronize_session=False)
    ).rowcount


def purge_expired(session: Session) -> int:
    """Leases of processes that died long ago (the sweep ignores them anyway)."""
    return session.execute(
        delete(QueueLease)
        .where(QueueLease.expires_at <= utcnow() - dt.timedelta(minutes=10))
        .execution_options(synchronize_session=False)
    ).rowcount
