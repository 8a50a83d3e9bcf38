"""Settings, from the environment, in one typed place.

| variable | meaning | default |
|---|---|---|
| ``HELPLINE_ENV`` | ``development``, ``test`` or ``production`` | ``development`` |
| ``HELPLINE_DATABASE_URL`` | SQLAlchemy URL of the case store | ``helpline.db`` in the project |
| ``HELPLINE_ENCRYPTION_KEY`` | Fernet keys for personal fields, comma-separated, newest first | - |
| ``HELPLINE_PSEUDONYM_KEY`` | secret of the keyed hash that turns addresses into sender ids | - |

Outside development a missing or placeholder secret stops start-up with a message that says
which variable and how to make one (``helpline keygen``). In development a fixed, clearly
labelled development key is used so that ``make run`` needs no set-up; it protects nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

ENVIRONMENTS = ("development", "test", "production")
# A SQLite file in the project folder: no set-up.
DEFAULT_DATABASE_URL = f"sqlite:///{Path(__file__).resolve().parent.parent / 'helpline.db'}"
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "xxx", "todo", "replace-me", "example"}


class SettingsError(RuntimeError):
    """A setting is missing or unusable; the message tells the operator what to do."""


def _dev_key(purpose: str) -> str:
    digest = hashlib.sha256(f"helpline-development-only-{purpose}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


@dataclasses.dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    encryption_keys: tuple[str, ...]
    pseudonym_key: str

    @property
    def development(self) -> bool:
        return self.env == "development"


def _secret(environ: Mapping[str, str], name: str, env: str, purpose: str) -> str:
    value = environ.get(name, "").strip()
    if value.lower() in _PLACEHOLDERS:
        if env == "production":
            raise SettingsError(
                f"{name} is {'not set' if not value else 'a placeholder'}. It protects workers'"
                f" personal data: generate one with `helpline keygen` and set it in the"
                f" environment (HELPLINE_ENV={env})."
            )
        logger.warning("%s not set: using the development key (HELPLINE_ENV=%s)", name, env)
        return _dev_key(purpose)
    return value


def load(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    env = environ.get("HELPLINE_ENV", "development").strip().lower()
    if env not in ENVIRONMENTS:
        raise SettingsError(f"HELPLINE_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    keys = _secret(environ, "HELPLINE_ENCRYPTION_KEY", env, "encryption")
    encryption_keys = tuple(k.strip() for k in keys.split(",") if k.strip())
    from cryptography.fernet import Fernet

    for key in encryption_keys:
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise SettingsError(
                "HELPLINE_ENCRYPTION_KEY is not a valid key (32 url-safe base64-encoded bytes);"
                " generate one with `helpline keygen`"
            ) from exc
    return Settings(
        env=env,
        database_url=environ.get("HELPLINE_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
        encryption_keys=encryption_keys,
        pseudonym_key=_secret(environ, "HELPLINE_PSEUDONYM_KEY", env, "pseudonym"),
    )
