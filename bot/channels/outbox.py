"""Delivery: a worker's queued replies go out through the provider's API, oldest first, sent by
the one process that holds the worker's lease (``bot.store.queue``).

Provider errors that can pass (429, 5xx, timeouts) are retried with backoff (a 429's Retry-After
when the provider gives one); after the retries, or on a permanent error, the reply is
``failed`` and caseworkers are alerted. Replies to a worker who sent STOP are ``held``; a closed
WhatsApp window holds them too, or sends them by SMS when the worker agreed to that. A
per-sender rate limit (``bot.channels.ratelimit``) makes a burst wait in the queue instead of
failing at the provider.

A reply is marked ``sent`` in the same transaction that reads the next one. A process killed
between the provider's answer and that commit sends the reply again when the worker is taken
over: at least once, never lost (a duplicate costs a worker one message; a silence may cost
more); no provider offers an idempotency key that would make it exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from bot.channels.contract import WHATSAPP_PREFIX, Sender, SendError, buttons_of
from bot.channels.keywords import STOP_AUTHOR
from bot.sms import without_accents
from bot.store import queue
from bot.store import repository as repo
from bot.store.models import Message, utcnow

logger = logging.getLogger(__name__)

# A reply whose rate limit asks for a longer wait than this goes back to the queue (the
# worker's lease is let go) instead of holding a processing slot while it waits.
MAX_INLINE_WAIT = 2.0
SIMULATED_PREFIX = "sim:"  # the web simulator's addresses (bot.store.repository): no provider


class Outbox:
    def __init__(self, database, settings, senders: dict[str, Sender], alert: Callable,
                 limiter=None) -> None:  # fmt: skip
        self.db = database
        self.settings = settings
        self.senders = senders
        self.alert = alert
        self.limiter = limiter  # bot.channels.ratelimit: None sends as fast as the provider takes

    def backoff(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.retry_base_seconds * 2 ** (attempts - 1))

    async def deliver(self, contact_id: int, still_ours: Callable[[], bool] = lambda: True,
                      first=None) -> None:  # fmt: skip
        """Sends the worker's queued replies, oldest first; stops at the first one to retry, or
        when this process no longer holds the worker (``still_ours``). ``first``: the first
        reply, already read (``next_reply``) in the transaction that stored it."""
        sent: tuple[int, str | None] | None = None
        while True:
            # Database work on a worker thread, off the event loop.
            if first is not None:
                reply, first = first, None
            else:
                reply = await asyncio.to_thread(self._next_reply, contact_id, sent, still_ours)
                sent = None
            if reply is None:
                return
            out_id, channel, address, text, parts_sent = reply
            sender = self.senders.get(channel)
            keys = await self._within_rate(out_id, channel, address, text, parts_sent)
            if keys is None:
                return
            try:
                if sender is None or not address:
                    raise SendError("no_sender" if sender is None else "no_address")
                provider_id = await sender.send(
                    channel, address, text, buttons_of(text), parts_sent=parts_sent
                )
            except SendError as exc:
                await self._provider_asked_to_wait(keys, exc)
                if not await asyncio.to_thread(self._send_failed, out_id, exc):
                    return
                continue
            sent = (out_id, str(provider_id) if provider_id else None, text)

    def _next_reply(self, contact_id: int, sent, still_ours):
        """Records the reply just sent (``sent``) and reads the next one to send, in one
        transaction: (id, channel, address, text, parts already sent), or None."""
        with self.db.session() as session:
            if sent is not None:
                self._mark_sent(session, *sent)
            return self.next_reply(session, contact_id, still_ours)

    def next_reply(self, session, contact_id: int, still_ours=lambda: True):
        """The next reply to send, inside the caller's transaction (replies to a worker who
        sent STOP are held on the way), or None."""
        while still_ours():
            out = queue.first_queued(session, contact_id)
            if out is None or queue.is_later(out.next_attempt_at):
                return None
            contact = out.contact
            if contact.opted_out and out.author != STOP_AUTHOR:
                out.status = "held"
                out.error = "opted_out"
                session.flush()
                continue
            address, text = contact.address, out.text
            if out.channel == "sms" and address and address.startswith(WHATSAPP_PREFIX):
                address = address[len(WHATSAPP_PREFIX):]  # the WhatsApp reply's SMS fallback
            if out.channel == "sms" and contact.sms_plain:
                text = without_accents(text)
            return out.id, out.channel, address, text, out.parts_sent or 0
        return None

    @staticmethod
    def _mark_sent(session, out_id: int, provider_id: str | None, text: str | None) -> None:
        """Records a reply as sent. A reply that names a case may have given the worker its
        secret: the transcript keeps it masked (the stored reply is read and rewritten). Any
        other reply is marked in one statement, without reading it back."""
        if not repo.names_a_case(text):
            queue.mark_sent(session, out_id, provider_id)
            return
        out = session.get(Message, out_id)
        if out is None:
            return
        out.status = "sent"
        out.provider_id = provider_id or out.provider_id
        out.error = None
        # The worker has their case's secret now: the transcript keeps it masked.
        out.text = repo.mask_secrets(session, out.text)

    async def _within_rate(self, out_id: int, channel: str, address: str | None, text: str,
                           parts_sent: int) -> list[tuple[str, int]]:  # fmt: skip
        """Waits for the sender's rate limits (short waits); the buckets taken, or None when the
        wait would be long: the reply is put back in the queue for then (nothing failed,
        nothing is lost, no processing slot is held while it waits)."""
        if self.limiter is None or not address or address.startswith(SIMULATED_PREFIX):
            return []
        from bot.channels import ratelimit

        keys = ratelimit.keys_for(
            channel, ratelimit.sender_id_for(channel, self.settings), address, text=text,
            parts_sent=parts_sent, segment_budget=self.settings.sms_segment_budget,
        )  # fmt: skip
        try:
            for key, cost in keys:
                await self.limiter.wait(key, cost, max_wait=MAX_INLINE_WAIT)
        except ratelimit.RateLimited as exc:
            await asyncio.to_thread(self._not_yet, out_id, exc.delay)
            logger.info("reply waits %.1f s for the %s sender's rate limit", exc.delay, channel)
            return None
        return keys

    def _not_yet(self, out_id: int, seconds: float) -> None:
        """Back in the queue for later (no attempt counted: nothing failed)."""
        with self.db.session() as session:
            out = session.get(Message, out_id)
            if out is not None:
                out.next_attempt_at = utcnow() + dt.timedelta(seconds=seconds)

    async def _provider_asked_to_wait(self, keys: list[tuple[str, int]], exc: SendError) -> None:
        """A 429: every process sending through these buckets pauses for the provider's wait."""
        if self.limiter is None or not keys or not exc.code.endswith("429"):
            return
        for key, _ in keys:
            await self.limiter.hold(key, exc.retry_after or self.settings.retry_base_seconds)

    def window_closed(self, out: Message) -> None:
        """WhatsApp refused a reply outside its 24-hour window (Twilio 63016): caseworkers are
        told; it goes by SMS to the same number if the worker agreed to that and SMS is set up,
        otherwise it is held until the worker writes again (``Inbox.accept``)."""
        contact = out.contact
        out.error = "twilio_63016"
        if contact is not None and contact.sms_fallback and "sms" in self.senders and (
            self.settings.twilio_sms_number
        ):
            out.channel = "sms"
            out.status = "queued"
            out.next_attempt_at = utcnow()
            self.alert("sms_fallback", out)
            return
        out.status = "held"
        self.alert("held", out)

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
                self.alert("held", out)
                return True
            if exc.retry and out.attempts < self.settings.max_attempts:
                wait = self.backoff(out.attempts)
                if exc.retry_after:
                    wait = max(wait, dt.timedelta(seconds=min(exc.retry_after, 3600)))
                out.next_attempt_at = utcnow() + wait
                logger.warning("reply not sent (%s), try %d: retrying", exc.code, out.attempts)
                return False
            out.status = "failed"
            logger.error("reply not sent (%s) after %d tries: for a caseworker",
                         exc.code, out.attempts)  # fmt: skip
            self.alert("undelivered", out)
            return True
