"""Tables of the case store.

Designed for the caseworker dashboard: queues by urgency and status, filters by language,
country and category, assignment and notes, all indexed. Every field a worker told us in their
own words (and their address) is an ``Encrypted`` column: ciphertext in the database, text in
Python. Categories, urgency, status, language and country stay in clear, so cases can be
filtered and counted without decrypting anything, and survive erasure as anonymous counts.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship
from sqlalchemy.types import TypeDecorator

Base = declarative_base()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Encrypted(TypeDecorator):
    """Text encrypted at rest with the engine's cipher (``Database`` attaches it to the dialect,
    so two databases with different keys can live in one process)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return dialect.helpline_cipher.encrypt(str(value))

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return dialect.helpline_cipher.decrypt(value)


class EncryptedBytes(TypeDecorator):
    """Bytes (an attachment) encrypted at rest with the engine's cipher."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else dialect.helpline_cipher.encrypt_bytes(bytes(value))

    def process_result_value(self, value, dialect):
        return None if value is None else dialect.helpline_cipher.decrypt_bytes(bytes(value))


class Contact(Base):
    """A worker as a channel knows them: only a keyed hash identifies them in clear."""

    __tablename__ = "contacts"

    id = Column(Integer, primary_key=True)
    pseudonym = Column(String(64), nullable=False, unique=True)  # HMAC of channel + address
    channel = Column(String(16), nullable=False)  # telegram, whatsapp, sms, rest
    address = Column(Encrypted)  # phone number or chat id, only to send replies
    language = Column(String(8))
    country = Column(String(2))  # destination country, ISO 3166-1 alpha-2
    opted_out = Column(Boolean, nullable=False, default=False)  # STOP until START
    last_inbound_at = Column(DateTime(timezone=True))  # WhatsApp's 24-hour window starts here
    # SMS without diacritics (GSM-7: half the segments), for languages that read well without
    # them (Vietnamese): offered once on SMS, then the worker's choice.
    sms_plain = Column(Boolean, nullable=False, default=False)
    sms_plain_offered = Column(Boolean, nullable=False, default=False)
    # On WhatsApp: may we fall back to SMS to this number when WhatsApp's 24-hour window is
    # closed? None = not asked yet.
    sms_fallback = Column(Boolean)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_seen_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    erased_at = Column(DateTime(timezone=True))

    cases = relationship("Case", back_populates="contact")
    messages = relationship("Message", back_populates="contact", cascade="all, delete-orphan")


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_queue", "status", "urgency", "created_at"),
        Index("ix_cases_awaiting", "simulated", "urgency", "awaiting_since"),
        Index("ix_cases_filters", "language", "country", "category"),
    )

    id = Column(Integer, primary_key=True)
    reference = Column(String(16), nullable=False, unique=True)  # HX-123456
    secret_hash = Column(String(128))  # scrypt of the short secret given at filing
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    organisation = Column(String(64), index=True)  # partner NGO the case is routed to
    category = Column(String(32), nullable=False, default="other")
    urgency = Column(String(16), nullable=False, default="normal")
    status = Column(String(16), nullable=False, default="new")
    ilo_indicators = Column(JSON, nullable=False, default=list)
    language = Column(String(8))
    country = Column(String(2))
    channel = Column(String(16))
    assigned_to = Column(String(64), index=True)
    handoff = Column(Boolean, nullable=False, default=False)  # a person must answer
    # The danger the worker is in (a taxonomy danger kind, or "unspecified"): set by the bot,
    # cleared only by a person (repository.release_handoff). While set, weak signals count.
    danger_kind = Column(String(16))
    # Opened from the web simulator: never in a real queue (a development-only filter shows it).
    simulated = Column(Boolean, nullable=False, default=False, server_default="0")
    # Since when the worker has been waiting for a person (their message with no caseworker
    # reply after it); null once a caseworker replied. The queue's second ordering and the
    # response-time targets count from it.
    awaiting_since = Column(DateTime(timezone=True))
    last_inbound_at = Column(DateTime(timezone=True))  # the worker's latest message on this case
    # A legal hold stops retention from deleting anything of this case (bot/store/retention.py).
    legal_hold = Column(Boolean, nullable=False, default=False, server_default="0")
    purged_at = Column(DateTime(timezone=True))  # when retention deleted its personal data

    # Intake, in the worker's words (all optional: every question can be skipped).
    what_happened = Column(Encrypted)
    city = Column(Encrypted)
    workplace = Column(Encrypted)
    who = Column(Encrypted)  # employer, agent or broker
    happened_when = Column(Encrypted)
    workers_affected = Column(Integer)
    fees_paid = Column(Encrypted)
    wages_owed = Column(Encrypted)
    may_identify = Column(Boolean)
    consent_ngo = Column(Boolean)
    consent_authorities = Column(Boolean)
    consent_employer = Column(Boolean)
    safe_contact = Column(Encrypted)  # a safe way and time to reach the worker

    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow)
    closed_at = Column(DateTime(timezone=True))

    contact = relationship("Contact", back_populates="cases")
    messages = relationship("Message", back_populates="case", order_by="Message.id")
    events = relationship(
        "CaseEvent", back_populates="case", order_by="CaseEvent.id", cascade="all, delete-orphan"
    )
    terms = relationship("CaseTerm", cascade="all, delete-orphan")


class Message(Base):
    """The transcript, both directions."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "provider_id", name="uq_messages_provider"),
        Index("ix_messages_queue", "status", "next_attempt_at"),
        Index("ix_messages_contact_queue", "contact_id", "direction", "status", "id"),
    )

    id = Column(Integer, primary_key=True)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    case_id = Column(Integer, ForeignKey("cases.id", ondelete="SET NULL"), index=True)
    direction = Column(String(3), nullable=False)  # "in" from the worker, "out" to them
    channel = Column(String(16), nullable=False)
    provider_id = Column(String(64))  # Telegram update id, Twilio MessageSid: deduplication
    text = Column(Encrypted)
    language = Column(String(8))
    intent = Column(String(32))
    author = Column(String(64))  # "bot", a caseworker, or null for the worker
    confidence = Column(Float)  # the intent's confidence, for a worker's message
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    # Delivery (bot/channels/inbox.py). Inbound: pending -> done, or caseworker when it could not
    # be answered after the retries. Outbound: queued -> sent -> delivered, held (STOP, closed
    # WhatsApp window), or failed. Null for messages that never went through a channel queue.
    status = Column(String(16))
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime(timezone=True))
    error = Column(String(64))  # a short code (HTTP status, provider error), never content
    # Outbound: parts of the reply (SMS parts) the provider already took; a retry sends the rest.
    parts_sent = Column(Integer, nullable=False, default=0, server_default="0")
    reply_to_id = Column(Integer, ForeignKey("messages.id", ondelete="SET NULL"))
    media = Column(JSON)  # the provider's references to photos, voice notes, documents
    chat_message_id = Column(String(32))  # Telegram's message_id of an inbound message (quick exit)

    contact = relationship("Contact", back_populates="messages")
    case = relationship("Case", back_populates="messages")
    attachments = relationship(
        "Attachment",
        back_populates="message",
        cascade="all, delete-orphan",
        order_by="Attachment.id",
    )


class Attachment(Base):
    """A file a worker sent (evidence): stored encrypted, never opened, run or rendered by us."""

    __tablename__ = "attachments"

    id = Column(Integer, primary_key=True)
    message_id = Column(
        Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True
    )
    content_type = Column(String(128), nullable=False)
    size = Column(Integer, nullable=False)
    sha256 = Column(String(64), nullable=False)
    data = Column(EncryptedBytes)  # null when it was over the size limit (not downloaded)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    message = relationship("Message", back_populates="attachments")


class CaseEvent(Base):
    """Audit trail: created, status_changed, urgency_changed, viewed, note, reply, assignment,
    erased."""

    __tablename__ = "case_events"

    id = Column(Integer, primary_key=True)
    case_id = Column(
        Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind = Column(String(32), nullable=False)
    actor = Column(String(64), nullable=False)  # "bot", "worker", a caseworker, "operator"
    detail = Column(JSON, nullable=False, default=dict)  # never personal data
    note = Column(Encrypted)  # a caseworker's note may quote the worker
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    case = relationship("Case", back_populates="events")


# --- the caseworkers' side (bot/dashboard) ---------------------------------------------------


class Organisation(Base):
    """The deploying organisation (the first one created) and its partner NGOs."""

    __tablename__ = "organisations"

    id = Column(Integer, primary_key=True)
    name = Column(String(64), nullable=False, unique=True)
    deploying = Column(Boolean, nullable=False, default=False)
    is_default = Column(Boolean, nullable=False, default=False)  # where unrouted cases go
    # Response-time targets in minutes per urgency; null: the defaults (bot/store/cases.py).
    response_minutes = Column(JSON)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class User(Base):
    """A person who signs in to the dashboard (a caseworker, supervisor or admin)."""

    __tablename__ = "users"

    id = Column(Integer, primary_key=True)
    email = Column(String(254), nullable=False, unique=True)  # lower case
    password_hash = Column(String(256))  # argon2id; null until set
    totp_secret = Column(Encrypted)  # two-factor sign-in (RFC 6238), encrypted at rest
    totp_enabled = Column(Boolean, nullable=False, default=False)
    recovery_codes = Column(JSON, nullable=False, default=list)  # SHA-256 of unused codes
    language = Column(String(8))  # the dashboard's language for this user
    disabled_at = Column(DateTime(timezone=True))
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    membership = relationship(
        "Membership", back_populates="user", uselist=False, cascade="all, delete-orphan"
    )


class Membership(Base):
    """A user's organisation and role (one organisation per account)."""

    __tablename__ = "memberships"

    id = Column(Integer, primary_key=True)
    user_id = Column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    organisation_id = Column(
        Integer, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role = Column(String(16), nullable=False)  # caseworker, supervisor, admin

    user = relationship("User", back_populates="membership")
    organisation = relationship("Organisation")


class WebSession(Base):
    """A dashboard sign-in: the cookie holds a random token, the table its SHA-256."""

    __tablename__ = "web_sessions"

    id = Column(String(64), primary_key=True)
    user_id = Column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    csrf_token = Column(String(64), nullable=False)
    verified = Column(Boolean, nullable=False, default=False)  # second factor done (or not needed)
    language = Column(String(8))
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_seen_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class LoginAttempt(Base):
    """Sign-in attempts, for rate limiting per account and per address (keyed hashes only)."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_account", "account", "at"),
                      Index("ix_login_attempts_address", "address", "at"))  # fmt: skip

    id = Column(Integer, primary_key=True)
    account = Column(String(64), nullable=False)  # keyed hash of the e-mail typed
    address = Column(String(64), nullable=False)  # keyed hash of the client address
    ok = Column(Boolean, nullable=False)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class RoutingRule(Base):
    """Country, language, category (null: any) -> organisation; the first match wins."""

    __tablename__ = "routing_rules"

    id = Column(Integer, primary_key=True)
    position = Column(Integer, nullable=False, default=0)
    country = Column(String(2))
    language = Column(String(8))
    category = Column(String(32))
    organisation_id = Column(
        Integer, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False
    )

    organisation = relationship("Organisation")


class AuditEvent(Base):
    """What people did outside one case's own trail: sign-in, refused access, user changes.
    Never content."""

    __tablename__ = "audit_log"

    id = Column(Integer, primary_key=True)
    actor = Column(String(254), nullable=False)
    action = Column(String(32), nullable=False, index=True)
    case_id = Column(Integer, index=True)  # no foreign key: the trail outlives the case
    detail = Column(JSON, nullable=False, default=dict)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)


class CaseTerm(Base):
    """Search index of names a worker gave (employer, agent, workplace): keyed hashes of their
    normalised words, never the words."""

    __tablename__ = "case_terms"
    __table_args__ = (Index("ix_case_terms_term", "term", "case_id"),)

    id = Column(Integer, primary_key=True)
    case_id = Column(
        Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True
    )
    term = Column(String(32), nullable=False)


class CasePresence(Base):
    """Who has a case page open (refreshed while it is open): "Ana is viewing"."""

    __tablename__ = "case_presence"

    case_id = Column(Integer, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    user_id = Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    seen_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class RevealRequest(Base):
    """A partner's supervisor asks to see the fields a worker asked not to share (with a
    reason); an admin of the deploying organisation approves or refuses. Both steps are in the
    case's audit trail."""

    __tablename__ = "reveal_requests"

    id = Column(Integer, primary_key=True)
    case_id = Column(
        Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True
    )
    organisation = Column(String(64), nullable=False)
    requested_by = Column(String(254), nullable=False)
    reason = Column(Encrypted, nullable=False)
    status = Column(String(16), nullable=False, default="pending")  # approved, refused
    decided_by = Column(String(254))
    decided_at = Column(DateTime(timezone=True))
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class ReferenceAttempt(Base):
    """Wrong secrets given for a case reference from another phone or channel, counted in the
    store (not in a conversation slot, which a new sender id would reset). Keyed by a keyed hash
    of the reference, so a row exists whether or not the case does."""

    __tablename__ = "reference_attempts"

    reference_hash = Column(String(64), primary_key=True)
    failures = Column(Integer, nullable=False, default=0, server_default="0")
    locked_until = Column(DateTime(timezone=True))
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class QueueLease(Base):
    """Which process is handling a worker's queue now (``bot.store.queue``): one row per worker
    being processed, deleted when the process lets go. A process that dies keeps its rows until
    ``expires_at``; then any other process may take the worker over. Never holds content."""

    __tablename__ = "queue_leases"

    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    owner = Column(String(64), nullable=False)  # host:pid:random of the process holding it
    expires_at = Column(DateTime(timezone=True), nullable=False, index=True)
