"""Encryption of personal fields at rest: Fernet (AES-128-CBC with HMAC-SHA256), keys rotated
with MultiFernet (the first key encrypts; every key decrypts; ``helpline rekey`` re-encrypts
under the first so that the others can be removed).

Also the minimum strength of the other secrets (``check_pseudonym_key``,
``check_webhook_secret``): pure functions the settings call, so a weak value stops start-up with
a message that says how to make a good one.
"""

from __future__ import annotations

import re
import secrets
from itertools import pairwise

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MIN_SECRET_LENGTH = 32
# Words that mark a value someone typed as a stand-in, not a random secret (in lower or upper
# case: mixed case turns up by chance in random base64).
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "placeholder", "example", "password",
                      "secret", "replace", "dummy", "development")  # fmt: skip
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # Bot API setWebhook's secret_token
_MAKE_KEY = "generate one with `helpline keygen`"
_MAKE_TOKEN = (
    "generate one with `helpline keygen --token`"
    ' (or: python -c "import secrets; print(secrets.token_urlsafe(32))")'
)


class FieldCipher:
    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._newest = Fernet(keys[0])
        self._fernet = MultiFernet([self._newest, *(Fernet(k) for k in keys[1:])])

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise InvalidToken(
                "a personal field cannot be decrypted with HELPLINE_ENCRYPTION_KEY: was the key"
                " changed without keeping the old one after it?"
            ) from exc

    def encrypt_bytes(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt_bytes(self, token: bytes) -> bytes:
        return self._fernet.decrypt(token)

    def is_current(self, token: bytes) -> bool:
        """Whether the newest key alone reads this token (nothing to rotate)."""
        try:
            self._newest.decrypt(token)
        except InvalidToken:
            return False
        return True

    def rotate(self, token: bytes) -> bytes:
        """The same plaintext (and timestamp) under the newest key; ``InvalidToken`` if no key
        reads it."""
        return self._fernet.rotate(token)


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def generate_token() -> str:
    """A random secret of 43 characters from A-Z a-z 0-9 _ - (Telegram's secret_token)."""
    return secrets.token_urlsafe(32)


def _weakness(value: str) -> str | None:
    """Why a secret looks typed rather than random (never quoting it), or None."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"is {len(value)} characters long, at least {MIN_SECRET_LENGTH} are needed"
    if any(word in value or word.upper() in value for word in _PLACEHOLDER_WORDS):
        return "looks like a placeholder"
    if len(set(value)) < 8:
        return "uses fewer than 8 different characters"
    if (value + value).find(value, 1) <= len(value) // 2:
        return "is a short pattern repeated"
    if re.search(r"(.)\1{9}", value) or _has_run(value, 10):
        return "has a long run of repeated or consecutive characters"
    return None


def _has_run(value: str, length: int) -> bool:
    """A run of ``length`` characters counting up or down by one (abcdefgh, 98765432)."""
    for step in (1, -1):
        run = 1
        for before, after in pairwise(value):
            run = run + 1 if ord(after) - ord(before) == step else 1
            if run >= length:
                return True
    return False


def check_pseudonym_key(value: str) -> None:
    """``ValueError`` unless the pseudonym key (HELPLINE_PSEUDONYM_KEY) looks random enough
    to key the HMACs that stand for workers' addresses: whoever guesses it can test phone
    numbers against the store."""
    weakness = _weakness(value or "")
    if weakness:
        raise ValueError(f"HELPLINE_PSEUDONYM_KEY {weakness}: {_MAKE_KEY}")


def check_webhook_secret(value: str) -> None:
    """``ValueError`` unless the Telegram webhook secret (TELEGRAM_WEBHOOK_SECRET) is one
    Telegram accepts (1-256 characters of A-Z a-z 0-9 _ -) and long and random enough that
    nobody can forge Telegram's updates."""
    value = value or ""
    if not _TELEGRAM_SECRET.fullmatch(value):
        raise ValueError(
            "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ - (Telegram"
            f" refuses any other): {_MAKE_TOKEN}"
        )
    weakness = _weakness(value)
    if weakness:
        raise ValueError(f"TELEGRAM_WEBHOOK_SECRET {weakness}: {_MAKE_TOKEN}")
