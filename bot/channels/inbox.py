"""The channels' durable queue: a message accepted from a worker is never lost.

1. ``accept`` stores the inbound message (encrypted, in the case store) before the webhook is
   acknowledged; its provider id (Telegram ``update_id``, Twilio ``MessageSid``) is unique per
   channel, so a duplicate delivery is refused and processed once.
2. ``process`` hands pending messages to Rasa one worker at a time, in the order they arrived,
   and stores the replies as queued outbound messages in the same transaction that marks the
   inbound message done. If the action server is down, or Rasa fails, the message stays pending
   and is retried with backoff; after ``max_attempts`` it is marked ``caseworker`` (a person must
   look at it) and the caseworkers are alerted.
3. ``deliver`` sends queued replies through the provider's API, in order. Provider errors that
   can pass (429, 5xx, timeouts) are retried with backoff; after the retries, or on a permanent
   error, the reply is ``failed`` and caseworkers are alerted. Replies to a worker who sent STOP
   are ``held``; a closed WhatsApp window holds them too (see the Twilio channel).
4. A background loop (and every start) picks up whatever is due, so a process that died in the
   middle resumes where it stopped.

STOP, START and HELP (English and each pack's words) are handled here, before the NLU, and
answered in the worker's language: STOP is confirmed once and then nothing more is sent (the
confirmation is the only message that passes an opt-out), START is confirmed and goes on to the
dialogue, HELP says what this is and how to stop, then the dialogue shows the menu. On SMS a
language whose pack has ``sms_plain`` words (Vietnamese) is offered SMS without accents once
(GSM-7, half the segments); the worker's choice is kept on the contact. On WhatsApp, a reply the
closed 24-hour window refuses goes by SMS to the same number when the worker agreed to that.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import or_, select

from bot.channels import texts
from bot.channels.config import ChannelSettings
from bot.sms import without_accents
from bot.store import repository as repo
from bot.store.models import Message, utcnow
from nlu.commands import CommandWords

logger = logging.getLogger(__name__)

MESSAGE_ID_PREFIX = "helpline-"  # Rasa's message_id of a queued message: helpline-<messages.id>


@dataclasses.dataclass
class Inbound:
    channel: str  # telegram, sms, whatsapp
    address: str  # chat id, phone number (whatsapp:+...)
    provider_id: str
    text: str
    kind: str = "text"  # text, callback, media, unsupported
    media: list[dict] = dataclasses.field(default_factory=list)  # {"ref", "content_type"}
    chat_message_id: str | None = None  # Telegram: the message's id in the chat


# Rasa 3.6 catches an action that fails (its server died, refused, timed out), logs "Encountered
# an exception while running action ..." from rasa.core.processor and finishes the turn without
# that action's events or reply. The queue must see that, per turn: the record is logged inside
# the task processing the message, so a context variable set there collects it.
_TURN_FAILURES: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "helpline_turn_failures", default=None
)
RASA_ACTION_FAILED = "Encountered an exception while running action"


class _ActionFailureWatch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        failures = _TURN_FAILURES.get()
        if failures is not None and str(record.msg).startswith(RASA_ACTION_FAILED):
            failures.append(record.levelno)


def watch_action_failures() -> None:
    """Attaches the watch to Rasa's processor logger, once."""
    rasa_logger = logging.getLogger("rasa.core.processor")
    if not any(isinstance(h, _ActionFailureWatch) for h in rasa_logger.handlers):
        rasa_logger.addHandler(_ActionFailureWatch(logging.ERROR))


class SendError(Exception):
    """A provider refused a reply. ``retry``: may pass (429, 5xx); ``hold``: keep it for later.
    ``parts_sent``: parts of the reply the provider had taken before it refused one (counting
    those of earlier tries), so that a retry sends only the rest; ``first_id``: the provider's id
    of the reply's first part, when it went out."""

    def __init__(
        self,
        code: str,
        *,
        retry: bool = False,
        hold: bool = False,
        parts_sent: int = 0,
        first_id: str | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code[:64]
        self.retry = retry
        self.hold = hold
        self.parts_sent = parts_sent
        self.first_id = first_id


class TooLarge(Exception):
    """A file over the size limit: recorded (type, size), not downloaded."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


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


class ProcessingError(Exception):
    """Rasa or the action server could not handle a message now (it will be retried)."""


def _aware(when: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back; they are UTC."""
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _later(when: dt.datetime | None) -> bool:
    """``when`` is still in the future."""
    return when is not None and _aware(when) > utcnow()


QUICK_EXIT_REPLY = "👍"  # neutral in every language, for a phone someone else may check
QUICK_EXIT_WINDOW = dt.timedelta(hours=47)  # Telegram lets a bot delete messages up to 48 h old


# Handled before the NLU, in each pack's words (pack.yml ``keywords``; English in the en pack).
CHANNEL_COMMANDS = ("stop", "start", "help", "quick_exit", "sms_plain", "sms_accents")
CHANNEL_AUTHOR = "channel"  # replies of the channel itself (START, HELP...), not of the dialogue
STOP_AUTHOR = "channel:stop"  # the STOP confirmation: the one message that passes an opt-out


WHATSAPP_PREFIX = "whatsapp:"
# What the dialogue sends instead of a reply for the menu's "clear this chat" (Telegram).
QUICK_EXIT_REQUEST = {"helpline": "quick_exit"}


class _NoPack:
    meta: dict = {}


NUMBERED = re.compile(r"^(\d{1,2}) (.+)$")


def buttons_of(text: str) -> list[tuple[str, str]]:
    """A reply's numbered options ("1 Ask about your rights") as (value, label) buttons."""
    return [(m.group(1), m.group(2)) for m in map(NUMBERED.match, text.splitlines()) if m]


class Inbox:
    def __init__(
        self,
        database,
        pseudonym_key: str,
        settings: ChannelSettings,
        senders: dict[str, Sender],
        packs=(),
        notifier=None,
        actions_health_url: str | None = None,
    ) -> None:
        self.db = database
        self.pseudonym_key = pseudonym_key
        self.settings = settings
        self.senders = senders
        self.packs = {pack.code: pack for pack in packs}
        self.keywords = CommandWords.from_packs(self.packs.values(), CHANNEL_COMMANDS)
        from bot.i18n import Translations

        self.translations = Translations()
        self.notifier = notifier
        self.actions_health_url = actions_health_url
        watch_action_failures()
        self.on_new_message: Callable[[Any], Awaitable[Any]] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._loop_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- 1. accepting ---------------------------------------------------------------------
    def accept(self, inbound: Inbound) -> int | None:
        """Stores the message; its contact id, or None when it was already accepted."""
        with self.db.session() as session:
            # An erased worker's message keeps only a keyed hash of its id: still a duplicate.
            erased = repo.erased_provider_id(session, inbound.channel, inbound.provider_id)
            duplicate = session.execute(
                select(Message.id).where(
                    Message.channel == inbound.channel,
                    Message.provider_id.in_((inbound.provider_id, erased)),
                )
            ).first()
            if duplicate:
                return None
            contact = repo.upsert_contact(
                session,
                pseudonym=repo.pseudonym(self.pseudonym_key, inbound.channel, inbound.address),
                channel=inbound.channel,
                address=inbound.address,
            )
            contact.last_inbound_at = utcnow()
            if inbound.channel == "whatsapp":
                # The worker wrote: WhatsApp's 24-hour window is open again for what it held.
                for held in session.execute(
                    select(Message).where(
                        Message.contact_id == contact.id,
                        Message.status == "held",
                        Message.error == "twilio_63016",
                    )
                ).scalars():
                    held.status, held.next_attempt_at = "queued", utcnow()
            message = repo.add_message(
                session,
                contact=contact,
                direction="in",
                text=inbound.text,
                channel=inbound.channel,
                provider_id=inbound.provider_id,
                # On the worker's open case at once: caseworkers see it live, and it reopens a
                # resolved case (a closed one stays closed).
                case=repo.latest_case(session, contact=contact, open_or_resolved=True),
            )
            message.status = "pending"
            message.next_attempt_at = utcnow()
            message.media = inbound.media or None
            message.chat_message_id = inbound.chat_message_id
            return contact.id

    def schedule(self, contact_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self.process(contact_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- 2. processing --------------------------------------------------------------------
    @staticmethod
    def _first(session, contact_id: int, direction: str, status: str) -> Message | None:
        """The oldest of a worker's messages in a queue (inbound pending, outbound queued)."""
        return session.execute(
            select(Message)
            .where(
                Message.contact_id == contact_id,
                Message.direction == direction,
                Message.status == status,
            )
            .order_by(Message.id)
            .limit(1)
        ).scalar_one_or_none()

    def _lock(self, contact_id: int) -> asyncio.Lock:
        return self._locks.setdefault(contact_id, asyncio.Lock())

    async def process(self, contact_id: int) -> None:
        """Every due pending message of one worker, in order, then their queued replies."""
        async with self._lock(contact_id):
            while True:
                with self.db.session() as session:
                    message = self._first(session, contact_id, "in", "pending")
                    if message is None or _later(message.next_attempt_at):
                        break  # later messages wait behind a message waiting for its retry
                    message_id = message.id
                try:
                    await self._handle(message_id)
                except ProcessingError as exc:
                    self._failed(message_id, str(exc))
                    break
            await self.deliver(contact_id)

    async def _handle(self, message_id: int) -> None:
        with self.db.session() as session:
            message = session.get(Message, message_id)
            contact = message.contact
            text, channel, pseudonym = message.text or "", message.channel, contact.pseudonym
            address = contact.address
            has_media = bool(message.media)
            command, keyword_language = self.keywords.command_and_language(text)
            language = contact.language or keyword_language
            if command == "stop":
                contact.opted_out = True
                message.status = "done"
                start = self._keyword(language, "start")
                self._channel_reply(
                    session, message, language, texts.STOPPED, author=STOP_AUTHOR, start=start
                )
                logger.info("worker opted out (STOP) on %s", channel)
                return
            if command in ("sms_plain", "sms_accents") and channel == "sms":
                contact.sms_plain = command == "sms_plain"
                contact.sms_plain_offered = True
                message.status = "done"
                reply = texts.SMS_PLAIN_ON if contact.sms_plain else texts.SMS_PLAIN_OFF
                self._channel_reply(session, message, language, reply)
                return
            if command == "start":
                contact.opted_out = False
                self._channel_reply(session, message, language, texts.STARTED)
            if command == "help":
                self._channel_reply(session, message, language, texts.HELP_INFO,
                                    stop=self._keyword(language, "stop"))  # fmt: skip
            quick_exit = command == "quick_exit" and channel == "telegram"
            if quick_exit:
                ids = self._chat_message_ids(session, contact)
                message.status = "done"
        if quick_exit:
            # Before the NLU, and nothing else happens: the chat is cleared, a neutral 👍 stays.
            await self._quick_exit(channel, address, ids)
            return
        if has_media:
            await self._download_media(message_id, channel)
        if not await self._actions_up():
            raise ProcessingError("actions_down")
        from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

        collector = CollectingOutputChannel()
        failures = _TURN_FAILURES.set([])
        try:
            await self.on_new_message(
                UserMessage(
                    text,
                    collector,
                    sender_id=pseudonym,
                    input_channel=channel,
                    message_id=f"{MESSAGE_ID_PREFIX}{message_id}",
                )
            )
        except Exception as exc:  # noqa: BLE001 - Rasa failed: retried, then a caseworker
            raise ProcessingError(type(exc).__name__) from exc
        finally:
            failed_actions = _TURN_FAILURES.get()
            _TURN_FAILURES.reset(failures)
        if failed_actions:
            # Rasa finished the turn without the action's reply (the action server died or
            # refused mid-turn): the worker got no answer, so the message is retried like any
            # failure, then goes to a caseworker; it is never marked done unanswered.
            raise ProcessingError("action_failed")
        replies = [r["text"] for r in collector.messages if r.get("text")]
        if channel == "telegram" and any(
            r.get("custom") == QUICK_EXIT_REQUEST for r in collector.messages
        ):
            # The menu's "clear this chat": the same quick exit as the keyword, nothing else.
            with self.db.session() as session:
                message = session.get(Message, message_id)
                message.status = "done"
                message.error = None
                ids = self._chat_message_ids(session, message.contact)
            await self._quick_exit(channel, address, ids)
            return
        with self.db.session() as session:
            message = session.get(Message, message_id)
            if message is None:  # the worker erased their data in this very turn
                erased = True
            else:
                erased = False
                for reply in replies:
                    out = repo.add_message(
                        session,
                        contact=message.contact,
                        case=message.case,
                        direction="out",
                        text=reply,
                        channel=channel,
                        author="bot",
                    )
                    out.status = "queued"
                    out.reply_to_id = message.id
                    out.next_attempt_at = utcnow()
                message.status = "done"
                message.error = None
                self._offer_plain_sms(session, message)
        if erased:
            # Nothing of theirs is stored any more, not even the address: the confirmation is
            # sent once, directly, and kept nowhere.
            sender = self.senders.get(channel)
            for reply in replies:
                try:
                    if sender is not None and address:
                        await sender.send(channel, address, reply, [])
                except SendError as exc:
                    logger.warning("erasure confirmation not sent (%s)", exc.code)

    async def _download_media(self, message_id: int, channel: str) -> None:
        """Stores the message's files as encrypted attachments (once; retried on failure)."""
        import hashlib

        from bot.store.models import Attachment

        with self.db.session() as session:
            message = session.get(Message, message_id)
            refs = list(message.media or [])
            if not refs or message.attachments:
                return
        sender = self.senders.get(channel)
        stored = []
        for ref in refs:
            content_type = str(ref.get("content_type") or "application/octet-stream")[:128]
            try:
                data = await sender.download(str(ref["ref"]), self.settings.media_max_bytes)
                stored.append((content_type, len(data), hashlib.sha256(data).hexdigest(), data))
            except TooLarge as exc:
                stored.append((content_type, exc.size, "-" * 64, None))
            except SendError as exc:
                raise ProcessingError(f"media_{exc.code}") from exc
        with self.db.session() as session:
            message = session.get(Message, message_id)
            for content_type, size, digest, data in stored:
                session.add(
                    Attachment(
                        message=message, content_type=content_type, size=size, sha256=digest,
                        data=data,
                    )
                )  # fmt: skip

    @staticmethod
    def _chat_message_ids(session, contact) -> list[str]:
        """Every message of this chat Telegram still lets us delete: the worker's and ours."""
        since = utcnow() - QUICK_EXIT_WINDOW
        ids = []
        for message in session.execute(
            select(Message).where(Message.contact_id == contact.id, Message.channel == "telegram")
        ).scalars():
            if _aware(message.created_at) < since:
                continue
            if message.direction == "in" and message.chat_message_id:
                ids.append(message.chat_message_id)
            elif message.direction == "out" and message.status == "sent" and message.provider_id:
                ids.append(message.provider_id)
        return ids

    async def _quick_exit(self, channel: str, address: str | None, ids: list[str]) -> None:
        sender = self.senders.get(channel)
        if sender is None or not address:
            return
        try:
            deleted = await sender.delete(address, ids)
            await sender.send(channel, address, QUICK_EXIT_REPLY, [])
            logger.info("quick exit: %d of %d messages deleted from the chat", deleted, len(ids))
        except SendError as exc:
            logger.warning("quick exit incomplete (%s)", exc.code)

    def _keyword(self, language: str | None, command: str) -> str:
        """The first word of ``command`` in the pack of ``language`` (English otherwise), in
        capitals, for a reply that tells the worker what to write."""
        for code in (language, "en"):
            words = ((self.packs.get(code or "") or _NoPack).meta.get("keywords") or {}).get(
                command
            )
            if words:
                return str(words[0]).upper()
        return command.upper()

    def _channel_reply(self, session, message: Message, language: str | None, text: str,
                       author: str = CHANNEL_AUTHOR, **values) -> Message:  # fmt: skip
        """Queues a reply of the channel itself, in the worker's language (delivered in order
        with the dialogue's replies; a STOP confirmation passes the opt-out). Once per message:
        a message retried after Rasa failed does not get it twice."""
        already = session.execute(
            select(Message).where(Message.reply_to_id == message.id, Message.author == author)
        ).scalar_one_or_none()
        if already is not None:
            return already
        out = repo.add_message(
            session,
            contact=message.contact,
            case=message.case,
            direction="out",
            text=self.translations.text(language, text, **values),
            channel=message.channel,
            language=language,
            author=author,
        )
        out.status = "queued"
        out.reply_to_id = message.id
        out.next_attempt_at = utcnow()
        return out

    def _offer_plain_sms(self, session, message: Message) -> None:
        """Once per SMS worker whose language reads well without accents (its pack has
        ``sms_plain`` words): the offer, after the dialogue's replies."""
        contact = message.contact
        if message.channel != "sms" or contact.sms_plain_offered or contact.opted_out:
            return
        pack = self.packs.get(contact.language or "")
        if pack is None or not (pack.meta.get("keywords") or {}).get("sms_plain"):
            return
        contact.sms_plain_offered = True
        self._channel_reply(
            session, message, contact.language, texts.SMS_PLAIN_OFFER,
            plain=self._keyword(contact.language, "sms_plain"),
            accents=self._keyword(contact.language, "sms_accents"),
        )  # fmt: skip

    async def _actions_up(self) -> bool:
        if not self.actions_health_url:
            return True
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.actions_health_url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    def _backoff(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.retry_base_seconds * 2 ** (attempts - 1))

    def _failed(self, message_id: int, code: str) -> None:
        with self.db.session() as session:
            message = session.get(Message, message_id)
            message.attempts = (message.attempts or 0) + 1
            message.error = code[:64]
            if message.attempts >= self.settings.max_attempts:
                message.status = "caseworker"
                logger.error("message could not be answered after %d tries (%s): for a caseworker",
                             message.attempts, code)  # fmt: skip
                self._alert("unanswered", message)
            else:
                message.next_attempt_at = utcnow() + self._backoff(message.attempts)
                logger.warning("message not processed (%s), try %d: retrying",
                               code, message.attempts)  # fmt: skip

    def _alert(self, reason: str, message: Message) -> None:
        if self.notifier is not None:
            self.notifier.alert(
                {
                    "reason": reason,
                    "message_id": message.id,
                    "case_ref": message.case.reference if message.case else None,
                    "channel": message.channel,
                    "error": message.error,
                }
            )

    # --- 3. delivering ----------------------------------------------------------------------
    async def deliver(self, contact_id: int) -> None:
        """Sends the worker's queued replies, oldest first; stops at the first one to retry."""
        while True:
            with self.db.session() as session:
                out = self._first(session, contact_id, "out", "queued")
                if out is None or _later(out.next_attempt_at):
                    return
                contact = out.contact
                if contact.opted_out and out.author != STOP_AUTHOR:
                    out.status = "held"
                    out.error = "opted_out"
                    continue
                out_id, channel, address, text = out.id, out.channel, contact.address, out.text
                parts_sent = out.parts_sent or 0
                if channel == "sms" and address and address.startswith(WHATSAPP_PREFIX):
                    address = address[len(WHATSAPP_PREFIX):]  # the WhatsApp reply's SMS fallback
                if channel == "sms" and contact.sms_plain:
                    text = without_accents(text)
            sender = self.senders.get(channel)
            try:
                if sender is None or not address:
                    raise SendError("no_sender" if sender is None else "no_address")
                provider_id = await sender.send(
                    channel, address, text, buttons_of(text), parts_sent=parts_sent
                )
            except SendError as exc:
                if not self._send_failed(out_id, exc):
                    return
                continue
            with self.db.session() as session:
                out = session.get(Message, out_id)
                out.status = "sent"
                out.provider_id = str(provider_id) if provider_id else out.provider_id
                out.error = None
                # The worker has their case's secret now: the transcript keeps it masked.
                out.text = repo.mask_secrets(session, out.text)

    def window_closed(self, out: Message) -> None:
        """WhatsApp refused a reply outside its 24-hour window (Twilio 63016): caseworkers are
        told; it goes by SMS to the same number if the worker agreed to that and SMS is set up,
        otherwise it is held until the worker writes again (``accept``)."""
        contact = out.contact
        out.error = "twilio_63016"
        if contact is not None and contact.sms_fallback and "sms" in self.senders and (
            self.settings.twilio_sms_number
        ):
            out.channel = "sms"
            out.status = "queued"
            out.next_attempt_at = utcnow()
            self._alert("sms_fallback", out)
            return
        out.status = "held"
        self._alert("held", out)

    def _send_failed(self, out_id: int, exc: SendError) -> bool:
        """Records a failed send; True when the queue may go on to the next reply."""
        with self.db.session() as session:
            out = session.get(Message, out_id)
            out.attempts = (out.attempts or 0) + 1
            out.error = exc.code
            if exc.parts_sent > (out.parts_sent or 0):
                # Those parts reached the provider: a retry must not send them again.
                out.parts_sent = exc.parts_sent
                out.provider_id = out.provider_id or exc.first_id
            if exc.hold and exc.code == "twilio_63016":
                self.window_closed(out)
                return True
            if exc.hold:
                out.status = "held"
                self._alert("held", out)
                return True
            if exc.retry and out.attempts < self.settings.max_attempts:
                out.next_attempt_at = utcnow() + self._backoff(out.attempts)
                logger.warning("reply not sent (%s), try %d: retrying", exc.code, out.attempts)
                return False
            out.status = "failed"
            logger.error("reply not sent (%s) after %d tries: for a caseworker",
                         exc.code, out.attempts)  # fmt: skip
            self._alert("undelivered", out)
            return True

    # --- 4. resuming ------------------------------------------------------------------------
    async def run_due(self) -> int:
        """Processes every worker with a due pending message or queued reply."""
        now = utcnow()
        with self.db.session() as session:
            contact_ids = sorted(
                {
                    cid
                    for (cid,) in session.execute(
                        select(Message.contact_id).where(
                            or_(Message.status == "pending", Message.status == "queued"),
                            or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
                        )
                    )
                }
            )
        for contact_id in contact_ids:
            await self.process(contact_id)
        return len(contact_ids)

    def start(self, interval: float = 1.0) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop(interval))

    async def _loop(self, interval: float) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:  # noqa: BLE001 - the loop must survive; the error is logged
                logger.exception("channel queue loop failed; retrying")
            await asyncio.sleep(interval)
