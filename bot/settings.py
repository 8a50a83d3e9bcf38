"""Every setting, from the environment, in one typed place (pydantic 1.10's ``BaseSettings``).

The table of variables is in the README ("Settings"); each field below names its variable.
No ``HELPLINE_ENV`` means **production**: a missing or placeholder secret stops start-up with a
message that says which variable and how to make one (``helpline keygen``). ``make run`` sets
``HELPLINE_ENV=development`` explicitly; there a fixed, clearly labelled development key is used
so that it needs no set-up. It protects nothing, so it is refused whenever a credential of a
real provider is set (Telegram or Twilio, pointing at their real servers).

``load()`` reads ``os.environ`` (or a mapping, in tests) and returns a frozen ``Settings``;
``parse()`` does the same without the secrets' checks. The channels (``bot.channels.config``),
the notifier, retention and the dashboard read theirs from it, so a boolean is parsed one way
everywhere (``1 true yes on`` / ``0 false no off``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseSettings, Field, ValidationError, validator

logger = logging.getLogger(__name__)

ENVIRONMENTS = ("development", "test", "production")
# A SQLite file in the project folder: no set-up.
DEFAULT_DATABASE_URL = f"sqlite:///{Path(__file__).resolve().parent.parent / 'helpline.db'}"
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "xxx", "todo", "replace-me", "example"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
REAL_TELEGRAM_API = "https://api.telegram.org"
REAL_TWILIO_API = "https://api.twilio.com"
_warned: set[str] = set()


class SettingsError(ValueError):
    """A setting is missing or unusable; the message tells the operator what to do."""


def _dev_key(purpose: str) -> str:
    digest = hashlib.sha256(f"helpline-development-only-{purpose}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def flag(value: str | bool | None, default: bool | None = None) -> bool | None:
    """The one way a boolean is read: ``1 true yes on`` and ``0 false no off``; else default."""
    if isinstance(value, bool):
        return value
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text and default is None:
        raise ValueError(f"{value!r} is not a yes/no value (use true or false)")
    return default


class Settings(BaseSettings):
    env: str = Field("production", env="HELPLINE_ENV")
    database_url: str = Field(DEFAULT_DATABASE_URL, env="HELPLINE_DATABASE_URL")
    encryption_keys: tuple[str, ...] = Field((), env="HELPLINE_ENCRYPTION_KEY")
    pseudonym_key: str = Field("", env="HELPLINE_PSEUDONYM_KEY")
    # Channels (bot/channels/config.py reads these).
    public_url: str = Field("", env="HELPLINE_PUBLIC_URL")
    telegram_token: str = Field("", env="TELEGRAM_BOT_TOKEN")
    telegram_secret: str = Field("", env="TELEGRAM_WEBHOOK_SECRET")
    telegram_api_base: str = Field(REAL_TELEGRAM_API, env="TELEGRAM_API_BASE")
    twilio_account_sid: str = Field("", env="TWILIO_ACCOUNT_SID")
    twilio_auth_token: str = Field("", env="TWILIO_AUTH_TOKEN")
    twilio_sms_number: str = Field("", env="TWILIO_SMS_NUMBER")
    twilio_whatsapp_sender: str = Field("", env="TWILIO_WHATSAPP_SENDER")
    twilio_api_base: str = Field(REAL_TWILIO_API, env="TWILIO_API_BASE")
    trusted_proxies: tuple[str, ...] = Field((), env="HELPLINE_TRUSTED_PROXIES")
    trust_forwarded: bool = Field(False, env="HELPLINE_TRUST_FORWARDED")
    simulator: bool | None = Field(None, env="HELPLINE_SIMULATOR")  # None: on in development
    sms_segment_budget: int = Field(4, env="HELPLINE_SMS_SEGMENT_BUDGET", ge=1, le=20)
    media_max_bytes: int = Field(20 * 1024 * 1024, env="HELPLINE_MEDIA_MAX_BYTES", ge=0)
    webhook_max_bytes: int = Field(256 * 1024, env="HELPLINE_WEBHOOK_MAX_BYTES", ge=1024)
    max_attempts: int = Field(5, env="HELPLINE_CHANNEL_MAX_ATTEMPTS", ge=1)
    retry_base_seconds: float = Field(2.0, env="HELPLINE_CHANNEL_RETRY_SECONDS", gt=0)
    # Alerts and emergency data (bot/emergency.py).
    notify_webhook: str = Field("", env="HELPLINE_NOTIFY_WEBHOOK")
    notify_secret: str = Field("", env="HELPLINE_NOTIFY_SECRET")
    emergency_contacts: str = Field("", env="HELPLINE_EMERGENCY_CONTACTS")
    crisis_lines: str = Field("", env="HELPLINE_CRISIS_LINES")
    # Retention (bot/store/retention.py): days; 0 or never: kept until a person deletes it.
    retain_closed_days: int | None = Field(365, env="HELPLINE_RETAIN_CLOSED_DAYS", ge=1)
    retain_resolved_days: int | None = Field(None, env="HELPLINE_RETAIN_RESOLVED_DAYS", ge=1)
    retain_no_case_days: int | None = Field(90, env="HELPLINE_RETAIN_NO_CASE_DAYS", ge=1)
    retain_tracker_days: int | None = Field(30, env="HELPLINE_RETAIN_TRACKER_DAYS", ge=1)
    # The action server as the channels' queue reaches it (set by `helpline run`).
    actions_url: str = Field("", env="HELPLINE_ACTIONS_URL")
    # Several processes (bot/store/queue.py, docs/scaling.md). The tracker store shares the
    # case store's database unless this names another.
    tracker_database_url: str = Field("", env="HELPLINE_TRACKER_DATABASE_URL")
    redis_url: str = Field("", env="HELPLINE_REDIS_URL")  # Rasa's lock store, shared rate limits
    queue_lease_seconds: float = Field(30.0, env="HELPLINE_QUEUE_LEASE_SECONDS", ge=1, le=3600)
    queue_concurrency: int = Field(4, env="HELPLINE_QUEUE_CONCURRENCY", ge=1, le=256)
    queue_batch: int = Field(50, env="HELPLINE_QUEUE_BATCH", ge=1, le=10000)
    actions_in_process: bool = Field(True, env="HELPLINE_ACTIONS_IN_PROCESS")
    # Outbound rate limits per provider sender: HELPLINE_RATE_<KIND>_PER_S and _BURST, read
    # by bot/channels/ratelimit.py (limits_from_env), which checks them.

    class Config:
        frozen = True
        case_sensitive = True

        @classmethod
        def customise_sources(cls, init_settings, env_settings, file_secret_settings):
            return (init_settings,)  # load() maps the environment: tests pass their own

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def telegram_real(self) -> bool:
        """A Telegram token aimed at Telegram itself (not a fake server in a test)."""
        return bool(self.telegram_token) and self.telegram_api_base == REAL_TELEGRAM_API

    @property
    def twilio_real(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token) and (
            self.twilio_api_base == REAL_TWILIO_API
        )

    @property
    def simulator_on(self) -> bool:
        return self.development if self.simulator is None else self.simulator

    @validator("env", pre=True)
    def _env(cls, value):  # noqa: N805 - pydantic's validator signature
        value = (value or "production").strip().lower()
        if value not in ENVIRONMENTS:
            raise ValueError(f"must be one of {', '.join(ENVIRONMENTS)}, not {value!r}")
        return value

    @validator("encryption_keys", "trusted_proxies", pre=True)
    def _list(cls, value):  # noqa: N805
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @validator("trusted_proxies")
    def _networks(cls, value):  # noqa: N805
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad one
        return value

    @validator("trust_forwarded", "simulator", "actions_in_process", pre=True)
    def _flag(cls, value):  # noqa: N805
        return flag(value)

    @validator(
        "retain_closed_days", "retain_resolved_days", "retain_no_case_days",
        "retain_tracker_days", pre=True,
    )  # fmt: skip
    def _days(cls, value):  # noqa: N805
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("0", "never", *_FALSE):
                return None
            if not text.isdigit():
                raise ValueError(f"must be a number of days, or never, not {value!r}")
        return value

    @validator(
        "database_url", "public_url", "telegram_api_base", "twilio_api_base", "notify_webhook",
        "tracker_database_url", "redis_url",
    )
    def _url(cls, value):  # noqa: N805
        return value.strip().rstrip("/") if value else value


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        name = error["loc"][0]
        field = Settings.__fields__.get(name)
        variable = field.field_info.extra.get("env", name) if field else name
        parts.append(f"{variable}: {error['msg']}")
    return "; ".join(parts)


def _secret(values: dict, field: str, variable: str, env: str, purpose: str) -> None:
    value = values.get(field)
    text = ",".join(value) if isinstance(value, (tuple, list)) else (value or "")
    if text.strip().lower() not in _PLACEHOLDERS:
        return
    if env == "production":
        raise SettingsError(
            f"{variable} is {'not set' if not text.strip() else 'a placeholder'}. It protects"
            f" workers' personal data: generate one with `helpline keygen` and set it in the"
            f" environment (HELPLINE_ENV={env}; `make run` sets development)."
        )
    values[field] = (_dev_key(purpose),) if field == "encryption_keys" else _dev_key(purpose)
    values.setdefault("_development_keys", []).append(variable)


def _check_strength(settings: Settings, development_keys: list[str]) -> None:
    """In production (and beside a real Telegram account), configured secrets strong enough to
    protect anything; everywhere, an alert webhook that may be used."""
    from bot.emergency import NotifierConfigError, check_notifier
    from bot.store.crypto import check_pseudonym_key, check_webhook_secret

    checks = []
    if settings.telegram_secret and (settings.production or settings.telegram_real):
        checks.append((check_webhook_secret, settings.telegram_secret))
    if settings.production and "HELPLINE_PSEUDONYM_KEY" not in development_keys:
        checks.append((check_pseudonym_key, settings.pseudonym_key))
    try:
        for check, value in checks:
            check(value)  # the message names the variable, never the value
        check_notifier(
            settings.notify_webhook, settings.notify_secret, production=settings.production
        )
    except (ValueError, NotifierConfigError) as exc:
        raise SettingsError(str(exc)) from exc


def _values(environ: Mapping[str, str]) -> dict:
    values: dict = {}
    for name, field in Settings.__fields__.items():
        raw = environ.get(field.field_info.extra["env"])
        if raw is not None and raw.strip() != "":
            values[name] = raw.strip()
    return values


def _build(values: dict) -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(f"unusable setting: {_field_errors(exc)}") from exc


def parse(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings, typed and checked, without the secrets' checks: for a part that needs no
    key (the channels' own settings, a test). A process starts with ``load``."""
    return _build(_values(os.environ if environ is None else environ))


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of this process, checked; ``SettingsError`` says what to fix."""
    values = _values(os.environ if environ is None else environ)
    env = (values.get("env") or "production").strip().lower()
    if env not in ENVIRONMENTS:
        raise SettingsError(f"HELPLINE_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    _secret(values, "encryption_keys", "HELPLINE_ENCRYPTION_KEY", env, "encryption")
    _secret(values, "pseudonym_key", "HELPLINE_PSEUDONYM_KEY", env, "pseudonym")
    development_keys = values.pop("_development_keys", [])
    settings = _build(values)
    from cryptography.fernet import Fernet

    for key in settings.encryption_keys:
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise SettingsError(
                "HELPLINE_ENCRYPTION_KEY is not a valid key (32 url-safe base64-encoded bytes);"
                " generate one with `helpline keygen`"
            ) from exc
    _check_strength(settings, development_keys)
    if development_keys:
        real = [name for name, on in (("Telegram", settings.telegram_real),
                                      ("Twilio", settings.twilio_real)) if on]  # fmt: skip
        if real:
            raise SettingsError(
                f"{' and '.join(development_keys)} not set, but a real {' and '.join(real)}"
                " account is configured: development keys protect nothing. Generate keys with"
                " `helpline keygen` and set them."
            )
        warning = (f"{' and '.join(development_keys)} not set: using the development key"
                   f" (HELPLINE_ENV={env})")  # fmt: skip
        if warning not in _warned:  # once per process, not at every load
            _warned.add(warning)
            logger.warning(warning)
    return settings
