"""The channels' durable queue: a message accepted from a worker is never lost, and any number
of processes may share it.

1. ``accept`` stores the inbound message (encrypted, in the case store) before the webhook is
   acknowledged; its provider id (Telegram ``update_id``, Twilio ``MessageSid``) is unique per
   channel, so a duplicate delivery is refused and processed once.
2. ``process`` takes the worker's lease (``bot.store.queue``: one process per worker at a time,
   whichever process that is), hands their pending messages to Rasa one at a time, in the order
   they arrived (``bridge``), and stores the replies as queued outbound messages in the same
   transaction that marks the inbound message done, if the lease is still ours. If Rasa or an
   action fails, the message stays pending and is retried with backoff; after ``max_attempts``
   it is marked ``caseworker`` (a person must look at it) and the caseworkers are alerted.
3. The same process then sends the worker's queued replies, in order (``outbox``).
4. A background sweep (and every start) takes up to ``queue_batch`` workers with something due
   and no live lease, and processes up to ``queue_concurrency`` of them at once: a backlog after
   an outage drains in parallel, and a process that died holding workers is replaced by any other
   once its leases expire.

STOP, START, HELP, the SMS accents choice and the quick exit are handled before the NLU
(``keywords``). On WhatsApp, a reply the closed 24-hour window refuses goes by SMS to the same
number when the worker agreed to that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

from sqlalchemy.orm import joinedload

from bot.channels import keywords as channel_keywords
from bot.channels.bridge import RASA_ACTION_FAILED, RasaBridge  # noqa: F401 - tests import it
from bot.channels.config import ChannelSettings
from bot.channels.contract import (  # noqa: F401 - the providers' names, re-exported
    QUICK_EXIT_REPLY,
    QUICK_EXIT_REQUEST,
    Inbound,
    ProcessingError,
    Sender,
    SendError,
    TooLarge,
    buttons_of,
)
from bot.channels.keywords import CHANNEL_AUTHOR, STOP_AUTHOR  # noqa: F401
from bot.channels.outbox import Outbox
from bot.store import queue
from bot.store import repository as repo
from bot.store.models import Message, utcnow
from bot.store.queue import MESSAGE_ID_PREFIX  # noqa: F401

logger = logging.getLogger(__name__)

QUICK_EXIT_WINDOW = dt.timedelta(hours=47)  # Telegram lets a bot delete messages up to 48 h old


@dataclasses.dataclass
class QueueOptions:
    """How this process works the shared queue (``HELPLINE_QUEUE_*`` settings)."""

    lease_seconds: float = 30.0  # a dead process's workers are taken over after this
    concurrency: int = 4  # workers processed at once by this process
    batch: int = 50  # workers taken per sweep
    interval: float = 1.0  # seconds between sweeps


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
        options: QueueOptions | None = None,
        limiter=None,
    ) -> None:
        self.db = database
        self.pseudonym_key = pseudonym_key
        self.settings = settings
        self.senders = senders
        self.packs = {pack.code: pack for pack in packs}
        self.keywords = channel_keywords.ChannelKeywords(self.packs)
        self.notifier = notifier
        self.options = options or QueueOptions()
        self.bridge = RasaBridge(actions_health_url)
        self.outbox = Outbox(database, settings, senders, self._alert, limiter)
        self.owner = queue.new_owner()  # this process in the lease table
        self._active: set[int] = set()  # workers this process is processing now
        self._again: set[int] = set()  # ... and that got a new message meanwhile
        self._lost: set[int] = set()  # ... whose lease another process took (we stalled)
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._loop_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False  # a shutdown: no new worker, no new turn

    # Rasa's handler and the action server's health URL live on the bridge.
    @property
    def on_new_message(self):
        return self.bridge.on_new_message

    @on_new_message.setter
    def on_new_message(self, handler) -> None:
        self.bridge.on_new_message = handler

    @property
    def actions_health_url(self) -> str | None:
        return self.bridge.actions_health_url

    @actions_health_url.setter
    def actions_health_url(self, url: str | None) -> None:
        self.bridge.actions_health_url = url

    # --- 1. accepting ---------------------------------------------------------------------
    def accept(self, inbound: Inbound) -> int | None:
        """Stores the message; its contact id, or None when it was already accepted."""
        with self.db.session() as session:
            # An erased worker's message keeps only a keyed hash of its id: still a duplicate.
            erased = repo.erased_provider_id(session, inbound.channel, inbound.provider_id)
            if queue.already_accepted(session, inbound.channel, (inbound.provider_id, erased)):
                return None
            contact = repo.upsert_contact(
                session,
                pseudonym=repo.pseudonym(self.pseudonym_key, inbound.channel, inbound.address),
                channel=inbound.channel,
                address=inbound.address,
            )
            contact.last_inbound_at = utcnow()
            if inbound.channel == "whatsapp" and contact.id is not None:
                # The worker wrote: WhatsApp's 24-hour window is open again for what it held.
                queue.release_window_held(session, contact.id)
            repo.add_message(
                session,
                contact=contact,
                direction="in",
                text=inbound.text,
                channel=inbound.channel,
                provider_id=inbound.provider_id,
                # On the worker's open case at once: caseworkers see it live, and it reopens a
                # resolved case (a closed one stays closed).
                case=repo.latest_case(session, contact=contact, open_or_resolved=True),
                **queue.pending(inbound.media, inbound.chat_message_id),
            )
            return contact.id

    def schedule(self, contact_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self.process(contact_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- 2. processing --------------------------------------------------------------------
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(max(1, self.options.concurrency)))
        return self._slots[1]

    @staticmethod
    async def _off_loop(function, *args):
        """Database work on a worker thread: the event loop keeps accepting webhooks and
        running Rasa for other workers meanwhile."""
        return await asyncio.to_thread(function, *args)

    def _release(self, contact_id: int, again: bool = True) -> bool:
        """Lets the worker go; True when something came in meanwhile and the worker is ours
        again (a message accepted while we held the lease: its own process's attempt to take
        the worker failed, so we must not leave it waiting for the next sweep). One
        transaction: on PostgreSQL the lease row stays locked until it commits."""
        with self.db.session() as session:
            if again and queue.has_due(session, contact_id):
                return queue.claim(session, contact_id, self.owner, self.options.lease_seconds)
            queue.release(session, contact_id, self.owner)  # (a shutdown: never again)
            return False

    async def _keep(self, contact_id: int) -> None:
        """Renews the lease while the worker is being processed (a long Rasa turn, a slow
        provider, a rate limit's wait)."""
        while True:
            await asyncio.sleep(self.options.lease_seconds / 3)
            if not await self._off_loop(self._renew, contact_id):
                self._lost.add(contact_id)
                logger.warning("queue lease lost (this process stalled): another takes over")
                return

    def _renew(self, contact_id: int) -> bool:
        with self.db.session() as session:
            return queue.renew(session, contact_id, self.owner, self.options.lease_seconds)

    def _let_go(self, contact_id: int) -> None:
        with self.db.session() as session:
            queue.release(session, contact_id, self.owner)

    async def process(self, contact_id: int) -> None:
        """Every due pending message of one worker, in order, then their queued replies, if
        this process can take the worker; otherwise whoever holds the worker does it."""
        if self._stopping:
            return  # the message stays pending: another process (or the next start) takes it
        if contact_id in self._active:
            self._again.add(contact_id)  # the task processing this worker looks again
            return
        self._active.add(contact_id)
        held = False
        try:
            async with self._semaphore():
                # The claim and the first message's reading in one transaction.
                claimed, first = await self._off_loop(self._next_message, contact_id, True)
                if not claimed:
                    return  # another process has the worker: it looks again before letting go
                held = True
                self._lost.discard(contact_id)
                keeper = asyncio.get_running_loop().create_task(self._keep(contact_id))
                try:
                    while True:
                        self._again.discard(contact_id)
                        failed = await self._process_claimed(contact_id, first)
                        first = None
                        if contact_id in self._lost:
                            held = False
                            return
                        if failed:  # the retry's backoff decides when; the sweep does it
                            return
                        if contact_id in self._again:
                            continue
                        held = await self._off_loop(
                            self._release, contact_id, not self._stopping
                        )
                        if not held and contact_id in self._again and not self._stopping:
                            # A message was accepted here while we let go, after the release
                            # had looked for one: its own ``process`` found the worker active
                            # and left it to us. Take the worker again now, not at the next
                            # sweep (a second of silence for a worker waiting for a reply).
                            held, first = await self._off_loop(
                                self._next_message, contact_id, True
                            )
                            if held:
                                self._lost.discard(contact_id)
                                continue
                        if not held:
                            return
                finally:
                    keeper.cancel()
        finally:
            self._active.discard(contact_id)
            self._again.discard(contact_id)
            self._lost.discard(contact_id)
            if held:  # an error on the way: let go now rather than after the lease
                await self._off_loop(self._let_go, contact_id)

    def _ours(self, contact_id: int) -> bool:
        """Still this process's worker: the lease was not lost, and no shutdown began (then
        the turn in progress finishes and its replies go out, nothing more)."""
        return contact_id not in self._lost and not self._stopping

    async def _process_claimed(self, contact_id: int, first=None) -> bool:
        """Processes and delivers; True when a message failed (it waits for its retry).
        ``first``: the first message, already read with the claim."""
        failed = False
        reply = None  # the first reply to send, read with the turn's replies
        while self._ours(contact_id):
            if first is not None:
                turn, first = first, None
            else:
                _, turn = await self._off_loop(self._next_message, contact_id, False)
            if turn is None:
                break  # none, or later messages wait behind a message waiting for its retry
            message_id, step, text, channel, sender_id, address, has_media, ids = turn
            if step == channel_keywords.DONE:
                continue
            if step == channel_keywords.QUICK_EXIT:
                # Before the NLU, and nothing else happens: the chat is cleared, a 👍 stays.
                await self._quick_exit(channel, address, ids)
                continue
            try:
                if has_media:
                    await self._download_media(message_id, channel)
                replies = await self.bridge.turn(text, sender_id, channel, message_id)
            except ProcessingError as exc:
                await self._off_loop(self._failed, message_id, str(exc))
                failed = True
                break
            after, reply = await self._off_loop(
                self._answered, contact_id, message_id, channel, address, replies
            )
            if after is not None:
                self._spawn(after())
        await self.outbox.deliver(contact_id, lambda: contact_id not in self._lost, first=reply)
        return failed

    def _next_message(self, contact_id: int, claim: bool):
        """(claimed, turn): with ``claim``, takes the worker's lease first (claimed False when
        another process holds it); turn: the worker's oldest pending message if it is due, its
        channel words handled in the same transaction (what the turn needs), or None."""
        with self.db.session() as session:
            if claim and not queue.claim(
                session, contact_id, self.owner, self.options.lease_seconds
            ):
                return False, None
            message = queue.first_pending(session, contact_id)
            if message is None or queue.is_later(message.next_attempt_at):
                return True, None
            step = self.keywords.handle(session, message)
            contact = message.contact
            ids = self._chat_message_ids(session, contact.id) if step == "quick_exit" else []
            return True, (message.id, step, message.text or "", message.channel,
                          contact.pseudonym, contact.address, bool(message.media), ids)  # fmt: skip

    def _answered(self, contact_id, message_id, channel, address, replies):
        """Stores a turn's replies and marks the message done, in one transaction that first
        checks the worker is still ours (the fence: a process that stalled past its lease
        stores nothing; the process that took the worker over answers)."""
        texts = [r["text"] for r in replies if r.get("text")]
        quick_exit = channel == "telegram" and any(
            r.get("custom") == QUICK_EXIT_REQUEST for r in replies
        )
        with self.db.session() as session:
            if not queue.fence(session, contact_id, self.owner, self.options.lease_seconds):
                self._lost.add(contact_id)
                logger.warning("queue lease lost before a turn was stored: not stored here")
                return None, None
            message = session.get(Message, message_id, options=[joinedload(Message.contact)])
            if message is None:  # the worker erased their data in this very turn
                erased = True
            else:
                erased = False
                message.status, message.error = "done", None
                if quick_exit:
                    ids = self._chat_message_ids(session, contact_id)
                else:
                    for text in texts:
                        repo.add_message(
                            session, contact=message.contact, case=message.case,
                            direction="out", text=text, channel=channel, author="bot",
                            **queue.queued_reply(message.id),
                        )  # fmt: skip
                    self.keywords.offer_plain_sms(session, message)
            # The first reply to send, read in this transaction (the outbox needs no other).
            reply = None if erased else self.outbox.next_reply(session, contact_id)
        if quick_exit and not erased:
            # The menu's "clear this chat": the same quick exit as the keyword, nothing else.
            return (lambda: self._quick_exit(channel, address, ids)), reply
        if erased:
            # Nothing of theirs is stored any more, not even the address: the confirmation is
            # sent once, directly, and kept nowhere.
            return (lambda: self._send_unstored(channel, address, texts)), None
        return None, reply

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_unstored(self, channel: str, address: str | None, texts: list[str]) -> None:
        sender = self.senders.get(channel)
        for text in texts:
            try:
                if sender is not None and address:
                    await sender.send(channel, address, text, [])
            except SendError as exc:
                logger.warning("erasure confirmation not sent (%s)", exc.code)

    async def _download_media(self, message_id: int, channel: str) -> None:
        """Stores the message's files as encrypted attachments (once; retried on failure)."""
        import hashlib

        from bot.store.models import Attachment

        def pending_refs() -> list:
            with self.db.session() as session:
                message = session.get(Message, message_id)
                return [] if message.attachments else list(message.media or [])

        refs = await self._off_loop(pending_refs)
        if not refs:
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
        def store() -> None:
            with self.db.session() as session:
                message = session.get(Message, message_id)
                for content_type, size, digest, data in stored:
                    session.add(
                        Attachment(
                            message=message, content_type=content_type, size=size,
                            sha256=digest, data=data,
                        )
                    )  # fmt: skip

        await self._off_loop(store)

    @staticmethod
    def _chat_message_ids(session, contact_id: int) -> list[str]:
        """Every message of this chat Telegram still lets us delete: the worker's and ours."""
        since = utcnow() - QUICK_EXIT_WINDOW
        ids = []
        for message in queue.chat_messages(session, contact_id, "telegram"):
            if queue.aware(message.created_at) < since:
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
                message.next_attempt_at = utcnow() + self.outbox.backoff(message.attempts)
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
        await self.outbox.deliver(contact_id, lambda: contact_id not in self._lost)

    def window_closed(self, out: Message) -> None:
        self.outbox.window_closed(out)

    # --- 4. resuming ------------------------------------------------------------------------
    async def run_due(self) -> int:
        """Processes up to ``batch`` workers with something due and no live lease, up to
        ``concurrency`` at once; how many were taken."""
        contact_ids = await self._off_loop(self._due, frozenset(self._active))
        if contact_ids:
            await asyncio.gather(*(self.process(cid) for cid in contact_ids))
        return len(contact_ids)

    def _due(self, skip: frozenset) -> list[int]:
        with self.db.session() as session:
            return queue.due_contacts(session, self.options.batch, skip=skip)

    def start(self, interval: float | None = None) -> None:
        if self._loop_task is None:
            # The queue's database work, the providers' blocking clients and the webhooks'
            # storing share the loop's default thread pool: more threads than asyncio's
            # default (cores + 4), so a burst of webhooks does not wait behind slow sends.
            import concurrent.futures

            asyncio.get_running_loop().set_default_executor(
                concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(16, 4 * self.options.concurrency),
                    thread_name_prefix="helpline-queue",
                )
            )
            self._loop_task = asyncio.get_running_loop().create_task(
                self._loop(self.options.interval if interval is None else interval)
            )

    async def _loop(self, interval: float) -> None:
        sweeps = 0
        while True:
            try:
                taken = await self.run_due()
                sweeps += 1
                if sweeps % 600 == 0:
                    await self._off_loop(self._purge_expired)
            except Exception:  # noqa: BLE001 - the loop must survive; the error is logged
                logger.exception("channel queue loop failed; retrying")
                taken = 0
            if taken < self.options.batch:  # after a full batch, look again at once
                await asyncio.sleep(interval)

    def _purge_expired(self) -> None:
        with self.db.session() as session:
            queue.purge_expired(session)

    async def stop(self, grace: float = 20.0) -> None:
        """A clean shutdown: takes no new worker, lets the turns in progress finish (up to
        ``grace`` seconds: a turn cut short would be run again elsewhere, and a reply it had
        sent could go twice), then lets go of every worker this process holds, so other
        processes take them at once instead of after the lease."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._active and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None

        def release_all() -> None:
            with self.db.session() as session:
                queue.release_all(session, self.owner)

        await self._off_loop(release_all)
