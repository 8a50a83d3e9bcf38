"""What a provider's channel and the queue agree on: the message that comes in, the sender that
sends a reply out, and the errors between them. Defined once here; ``inbox`` (the queue),
``outbox`` (delivery), the providers (``telegram``, ``twilio``, ``simulator``) and the dialogue's
quick exit all import them from this module."""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass
class Inbound:
    channel: str  # telegram, sms, whatsapp
    address: str  # chat id, phone number (whatsapp:+...)
    provider_id: str
    text: str
    kind: str = "text"  # text, callback, media, unsupported
    media: list[dict] = dataclasses.field(default_factory=list)  # {"ref", "content_type"}
    chat_message_id: str | None = None  # Telegram: the message's id in the chat


class SendError(Exception):
    """A provider refused a reply. ``retry``: may pass (429, 5xx); ``hold``: keep it for later.
    ``parts_sent``: parts of the reply the provider had taken before it refused one (counting
    those of earlier tries), so that a retry sends only the rest; ``first_id``: the provider's id
    of the reply's first part, when it went out; ``retry_after``: seconds the provider asked us
    to wait (a 429's Retry-After), when it said."""

    def __init__(
        self,
        code: str,
        *,
        retry: bool = False,
        hold: bool = False,
        parts_sent: int = 0,
        first_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code[:64]
        self.retry = retry
        self.hold = hold
        self.parts_sent = parts_sent
        self.first_id = first_id
        self.retry_after = retry_after


class TooLarge(Exception):
    """A file over the size limit: recorded (type, size), not downloaded."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ProcessingError(Exception):
    """Rasa or the action server could not handle a message now (it will be retried)."""


class Sender:
    """Sends one reply to one address through a provider; returns the provider's message id."""

    async def send(
        self,
        channel: str,
        address: str,
        text: str,
        buttons: list[tuple[str, str]],
        parts_sent: int = 0,
    ):
        """Sends one reply; returns the provider's message id. A provider that splits a reply
        into parts (SMS) skips the first ``parts_sent``, which went out in an earlier try."""
        raise NotImplementedError

    async def delete(self, address: str, message_ids: list[str]) -> int:
        """Deletes these messages from the chat (quick exit); how many went."""
        raise NotImplementedError

    async def download(self, ref: str, limit: int) -> bytes:
        """A file the worker sent, with the provider's authentication, at most ``limit`` bytes
        (``TooLarge`` beyond); ``SendError`` when the provider fails."""
        raise NotImplementedError


WHATSAPP_PREFIX = "whatsapp:"
# What the dialogue sends instead of a reply for the menu's "clear this chat" (Telegram).
QUICK_EXIT_REQUEST = {"helpline": "quick_exit"}
QUICK_EXIT_REPLY = "👍"  # neutral in every language, for a phone someone else may check

NUMBERED = re.compile(r"^(\d{1,2}) (.+)$")


def buttons_of(text: str) -> list[tuple[str, str]]:
    """A reply's numbered options ("1 Ask about your rights") as (value, label) buttons."""
    return [(m.group(1), m.group(2)) for m in map(NUMBERED.match, text.splitlines()) if m]
