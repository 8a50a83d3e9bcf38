"""Encryption of personal fields at rest: Fernet (AES-128-CBC with HMAC-SHA256), keys rotated
with MultiFernet (the first key encrypts; every key decrypts)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class FieldCipher:
    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

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


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")
