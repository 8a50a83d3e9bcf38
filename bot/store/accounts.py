"""Organisations, dashboard users, sign-in, two-factor codes and sessions.

- Passwords: argon2id (argon2-cffi's defaults), at least 12 characters.
- Two-factor: TOTP (RFC 6238, pyotp), the secret encrypted at rest; ten single-use recovery
  codes, stored as SHA-256 (they are random, 50 bits each).
- Sessions: the cookie holds 32 random bytes; the table keeps their SHA-256, so a copy of the
  database opens no session. 30 minutes idle, 12 hours at most.
- Sign-in attempts are counted per account and per client address (keyed hashes of both, never
  the e-mail or the address in clear); after a few failures every further attempt must wait a
  delay that doubles (``retry_after``). Every failure gives the same answer, whatever was wrong.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bot.store.cases import ROLES, Actor, audit
from bot.store.models import LoginAttempt, Membership, Organisation, User, WebSession, utcnow
from bot.store.repository import StoreError

IDLE = dt.timedelta(minutes=30)
LIFETIME = dt.timedelta(hours=12)
MIN_PASSWORD = 12
RECOVERY_CODES = 10
# Failures in this window count; after FREE_FAILURES, each attempt waits 2^(n - FREE) seconds
# after the last failure (1, 2, 4 ... at most MAX_DELAY).
WINDOW = dt.timedelta(minutes=15)
FREE_FAILURES = 3
MAX_DELAY = 15 * 60
ISSUER = "Migrant helpline"

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the e-mail is unknown, so that a wrong e-mail costs as long as a wrong
    password. Made at the first sign-in, not when a command imports this module."""
    return _hasher.hash(secrets.token_hex(16))


class SignInFailed(StoreError):
    """Deliberately vague: the e-mail, the password or the code was wrong, or the account is
    disabled, or it must wait (``retry_after`` seconds, 0 if not)."""

    def __init__(self, retry_after: int = 0) -> None:
        super().__init__("sign-in failed: check your e-mail, password and code")
        self.retry_after = retry_after


def _keyed(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:64]


# --- organisations ------------------------------------------------------------------------


def add_organisation(session: Session, name: str, *, actor: Actor) -> Organisation:
    name = " ".join((name or "").split())
    if not name or len(name) > 64:
        raise StoreError("an organisation needs a name of 1-64 characters")
    if session.execute(select(Organisation).where(Organisation.name == name)).scalar():
        raise StoreError(f"there is already an organisation {name!r}")
    first = session.execute(select(func.count()).select_from(Organisation)).scalar_one() == 0
    organisation = Organisation(name=name, deploying=first, is_default=first)
    session.add(organisation)
    session.flush()
    audit(session, actor, "organisation_added", name=name, deploying=first)
    return organisation


def set_response_minutes(
    session: Session, name: str, minutes: dict[str, int], *, actor: Actor
) -> Organisation:
    """An organisation's own response-time targets (minutes per urgency)."""
    from bot.taxonomy import URGENCIES

    org = organisation(session, name)
    for urgency, value in minutes.items():
        if urgency not in URGENCIES or not 1 <= int(value) <= 60 * 24 * 60:
            raise StoreError(f"{urgency}={value}: an urgency and 1 to 86400 minutes")
    own = {k: int(v) for k, v in minutes.items()}
    org.response_minutes = {**(org.response_minutes or {}), **own}
    audit(session, actor, "response_targets", organisation=name, minutes=org.response_minutes)
    return org


def organisation(session: Session, name: str) -> Organisation:
    found = session.execute(select(Organisation).where(Organisation.name == name)).scalar()
    if found is None:
        raise StoreError(f"no organisation {name!r} (helpline orgs add NAME)")
    return found


# --- users --------------------------------------------------------------------------------


def _email(email: str) -> str:
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise StoreError(f"not an e-mail address: {email!r}")
    return email


def check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise StoreError(f"a password needs at least {MIN_PASSWORD} characters")


def add_user(
    session: Session,
    email: str,
    *,
    organisation_name: str,
    role: str,
    password: str,
    actor: Actor,
    two_factor: bool,
) -> tuple[User, str | None]:
    """A new user; with ``two_factor``, its TOTP secret is made now and its otpauth:// URI
    returned (to show once)."""
    email = _email(email)
    if role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}")
    org = organisation(session, organisation_name)
    if role == "admin" and not org.deploying:
        raise StoreError("only the deploying organisation has admins")
    if session.execute(select(User).where(User.email == email)).scalar():
        raise StoreError(f"there is already a user {email}")
    check_password(password)
    user = User(email=email, password_hash=_hasher.hash(password), recovery_codes=[])
    user.membership = Membership(organisation=org, role=role)
    session.add(user)
    uri = start_totp(user) if two_factor else None
    session.flush()
    audit(session, actor, "user_added", user=email, role=role, organisation=org.name)
    return user, uri


def find_user(session: Session, email: str) -> User:
    user = session.execute(select(User).where(User.email == _email(email))).scalar()
    if user is None:
        raise StoreError(f"no user {email!r}")
    return user


def disable_user(session: Session, email: str, *, actor: Actor) -> User:
    user = find_user(session, email)
    user.disabled_at = user.disabled_at or utcnow()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit(session, actor, "user_disabled", user=user.email)
    return user


def reset_user(
    session: Session, email: str, *, password: str, actor: Actor, two_factor: bool
) -> tuple[User, str | None]:
    """A new password, a new two-factor secret (when required), no recovery codes, signed out
    everywhere, enabled again."""
    user = find_user(session, email)
    check_password(password)
    user.password_hash = _hasher.hash(password)
    user.totp_enabled, user.totp_secret, user.recovery_codes = False, None, []
    user.disabled_at = None
    uri = start_totp(user) if two_factor else None
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit(session, actor, "user_reset", user=user.email)
    return user, uri


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """A user changes their own password: the current one must be right; other sessions end."""
    if not _password_ok(user, current):
        raise StoreError("your current password is not right")
    check_password(new)
    user.password_hash = _hasher.hash(new)
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit(session, Actor.of(user), "password_changed")


# --- two-factor ---------------------------------------------------------------------------


def start_totp(user: User) -> str:
    """A new (not yet confirmed) TOTP secret; its otpauth:// URI for an authenticator app."""
    user.totp_secret = pyotp.random_base32()
    user.totp_enabled = False
    return totp_uri(user)


def totp_uri(user: User) -> str:
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def confirm_totp(session: Session, user: User, code: str) -> list[str]:
    """Turns two-factor sign-in on once a first code is right; returns the recovery codes (shown
    once)."""
    if not user.totp_secret or not _totp_ok(user, code):
        raise StoreError("that code is not right: check the time on your phone and try again")
    user.totp_enabled = True
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    user.recovery_codes = [hashlib.sha256(c.encode()).hexdigest() for c in codes]
    return codes


def _totp_ok(user: User, code: str) -> bool:
    code = "".join((code or "").split())
    return bool(user.totp_secret) and code.isdigit() and pyotp.TOTP(user.totp_secret).verify(
        code, valid_window=1
    )


def _recovery_ok(user: User, code: str) -> bool:
    digest = hashlib.sha256("".join((code or "").split()).lower().encode()).hexdigest()
    for stored in list(user.recovery_codes or []):
        if hmac.compare_digest(stored, digest):
            user.recovery_codes = [c for c in user.recovery_codes if c != stored]  # single use
            return True
    return False


# --- sign-in ------------------------------------------------------------------------------


def retry_after(session: Session, *, account: str, address: str, now=None) -> int:
    """Seconds before another attempt from this account or address is even checked."""
    now = now or utcnow()
    wait = 0
    for column, value in ((LoginAttempt.account, account), (LoginAttempt.address, address)):
        failures, last = session.execute(
            select(func.count(), func.max(LoginAttempt.at)).where(
                column == value, LoginAttempt.ok.is_(False), LoginAttempt.at > now - WINDOW
            )
        ).one()
        if failures >= FREE_FAILURES and last is not None:
            if last.tzinfo is None:
                last = last.replace(tzinfo=dt.timezone.utc)
            delay = min(2 ** (failures - FREE_FAILURES), MAX_DELAY)
            wait = max(wait, int((last + dt.timedelta(seconds=delay) - now).total_seconds()) + 1)
    return max(wait, 0)


def sign_in(
    session: Session,
    *,
    email: str,
    password: str,
    code: str,
    address: str,
    key: bytes,
) -> User:
    """The user, if e-mail, password and (when the user has two-factor sign-in, or it is
    required) the code or a recovery code are right; else ``SignInFailed``, the same for every
    cause. (Whether a user without two-factor sign-in must enrol first is the caller's rule.)"""
    account_key = _keyed(key, (email or "").strip().lower())
    address_key = _keyed(key, address or "-")
    wait = retry_after(session, account=account_key, address=address_key)
    if wait:
        raise SignInFailed(wait)
    user = session.execute(select(User).where(User.email == (email or "").strip().lower())).scalar()
    ok = _password_ok(user, password) and user.disabled_at is None and user.membership is not None
    if ok and user.totp_enabled:
        ok = _totp_ok(user, code) or _recovery_ok(user, code)
    session.add(LoginAttempt(account=account_key, address=address_key, ok=ok))
    if not ok:
        session.flush()
        raise SignInFailed(retry_after(session, account=account_key, address=address_key))
    # A password rehash when argon2's parameters have grown.
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _password_ok(user: User | None, password: str) -> bool:
    try:
        if user is None or not user.password_hash:
            _hasher.verify(_dummy_hash(), password or "")
            return False
        return _hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        return False


def open_session(session: Session, user: User, *, verified: bool) -> str:
    """A new sign-in session; returns the token for the cookie (the table keeps its hash)."""
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id=hashlib.sha256(token.encode()).hexdigest(),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            verified=verified,
            language=user.language,
        )
    )
    return token


def current_session(session: Session, token: str | None, now=None) -> WebSession | None:
    """The live session of a cookie token (idle and lifetime limits), touched; else None."""
    if not token or len(token) > 100:
        return None
    now = now or utcnow()
    found = session.get(WebSession, hashlib.sha256(token.encode()).hexdigest())
    if found is None:
        return None
    created, seen = (_aware(found.created_at), _aware(found.last_seen_at))
    if now - seen > IDLE or now - created > LIFETIME:
        session.delete(found)
        return None
    found.last_seen_at = now
    return found


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(
            delete(WebSession).where(WebSession.id == hashlib.sha256(token.encode()).hexdigest())
        )
