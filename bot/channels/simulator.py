"""The local web simulator: chat as a worker on SMS, WhatsApp or Telegram from a browser, without
a Telegram or Twilio account, through the path a real worker's message takes.

``GET /webhooks/simulator/`` serves one self-contained page (``simulator.html``: no external
assets, no build step). What the simulated worker types (``POST /webhooks/simulator/webhook``)
becomes an ``Inbound`` message of the channel they picked (``sms``, ``whatsapp`` or
``telegram``) from the address ``sim:<worker>`` and goes through the channels' durable queue
(``bot.channels.inbox``) like any other: stored, STOP/START/quick exit, Rasa with that channel's
name, replies stored and delivered. Only the provider's API call is replaced: the queue's sender
for a simulated address is the real ``TwilioSender``/``TelegramSender`` with its API client
swapped for a recorder, so what is recorded is exactly what Twilio or Telegram would have been
asked to send: the SMS parts after ``split_for_sms`` (numbered, within the segment budget), each
with its segments and encoding; Telegram's text and inline keyboard; WhatsApp's text.
``GET /webhooks/simulator/messages`` hands the page what the worker received since a point,
and the state of the worker's queue (a reply waiting, held after STOP, failed).

``base.SenderRouter`` routes ``sim:`` addresses to the recorder and every other address to the
provider, so a real Twilio or Telegram configured at the same time is never called for a
simulated worker, and no real worker's reply ends up here.

Picking a language starts the conversation in it the way a worker would: the page's "new worker"
sends, as the worker's first message, a greeting from that pack's own training examples (the one
the loaded model most surely reads as a greeting in that language), so the conversation's
language is set by the real rule (``bot.language``), and a newly added pack works unchanged.

On in development (the default ``HELPLINE_ENV``), or anywhere with ``HELPLINE_SIMULATOR=true``;
off in test and production unless so enabled, and with ``HELPLINE_SIMULATOR=false``: then its
routes answer 404 and one log line says it is off. It is served by the Rasa server itself, on
the address ``helpline run`` binds (127.0.0.1 by default). Simulated conversations are stored in
the case store like real ones. Log lines carry no text and no worker id. A worker is only ever
the number the simulator gave (always ``sim:<number>`` in the queue), never a pseudonym or a
real address, so nobody can act as a real worker here; a request body over 64 KB is a 413.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import re
import secrets
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sanic import Blueprint, response
from sanic.request import Request

from bot.channels.base import SIMULATED_PREFIX, HelplineChannel, Rejected, read_body, too_large
from bot.channels.contract import Inbound, Sender, SendError
from bot.channels.telegram import TelegramSender
from bot.channels.twilio import TwilioSender
from bot.sms import segments

logger = logging.getLogger(__name__)

CHANNELS = ("sms", "whatsapp", "telegram")
TEXT_LIMIT = 4096  # what our Telegram and Twilio channels take of a message, at most
BODY_LIMIT = 64 * 1024  # a request to the simulator's API, at most
CALLBACK_LIMIT = 64  # Telegram's limit on a button's callback data
WORKER_ID = re.compile(r"[1-9][0-9]{5,14}")  # a number: Telegram's sender wants a chat id
TWILIO_BODY_LIMIT = 1600  # Twilio refuses longer bodies (error 21617)
TELEGRAM_TEXT_LIMIT = 4096  # Telegram refuses longer messages
GREETING_CANDIDATES = 12  # a pack's greetings tried to start a conversation in its language
PAGE = Path(__file__).with_name("simulator.html")


class Recorder:
    """What simulated workers received, in memory, per worker, oldest first; bounded (the oldest
    workers are forgotten first). An entry's ``kind`` says what came: ``sms`` (one part),
    ``whatsapp``, ``telegram`` or ``deleted`` (a quick exit); its ``seq`` only grows, so the page
    asks for what came after the last one it has. Thread-safe: Twilio's client runs in a worker
    thread."""

    def __init__(self, max_workers: int = 1000, max_entries: int = 500) -> None:
        self.max_workers = max_workers
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._received: collections.OrderedDict[str, list[dict]] = collections.OrderedDict()

    def add(self, worker: str, entry: dict) -> dict:
        with self._lock:
            entry = {"seq": next(self._seq), **entry}
            entries = self._received.pop(worker, [])
            entries.append(entry)
            del entries[: -self.max_entries]
            self._received[worker] = entries
            while len(self._received) > self.max_workers:
                self._received.popitem(last=False)
            return entry

    def since(self, worker: str, after: int) -> list[dict]:
        with self._lock:
            return [e for e in self._received.get(worker, []) if e["seq"] > after]

    def message_id(self) -> int:
        """A Telegram message id, for the worker's messages and ours (quick exit deletes both)."""
        with self._lock:
            return next(self._message_ids)

    def offered(self, worker: str, value: str) -> bool:
        """A Telegram button with this callback value was sent to this worker."""
        with self._lock:
            return any(
                button["value"] == value
                for entry in self._received.get(worker, [])
                for row in entry.get("buttons", [])
                for button in row
            )


class _RecordingTwilioClient:
    """Stands in for twilio's ``Client``: ``messages.create`` records the message Twilio would
    have been asked to send (and refuses what Twilio refuses: a body over 1,600 characters)."""

    def __init__(self, recorder: Recorder, channel: str) -> None:
        self.recorder = recorder
        self.channel = channel
        self.messages = self

    def create(self, *, to: str, from_: str, body: str, **kwargs: Any) -> SimpleNamespace:
        if len(body) > TWILIO_BODY_LIMIT:
            from twilio.base.exceptions import TwilioRestException

            raise TwilioRestException(400, "Messages.json", "body too long", code=21617,
                                      method="POST")  # fmt: skip
        sid = f"SIM{uuid.uuid4().hex}"
        entry: dict[str, Any] = {"kind": self.channel, "text": body, "message_id": sid}
        if self.channel == "sms":
            seg = segments(body)
            entry["sms"] = {
                "segments": seg.count,
                "encoding": seg.encoding,
                "units": seg.units,
                "single_limit": 160 if seg.encoding == "GSM-7" else 70,
            }
        self.recorder.add(to, entry)
        return SimpleNamespace(sid=sid)


class _RecordingTwilioSender(TwilioSender):
    """Our Twilio sender (splitting, numbering, budget: unchanged) with the recording client."""

    def __init__(self, settings, recorder: Recorder, channel: str) -> None:
        super().__init__(settings)
        self._recording_client = _RecordingTwilioClient(recorder, channel)

    @property
    def client(self):
        return self._recording_client


class _RecordingBot:
    """Stands in for python-telegram-bot's ``Bot``: records the messages and inline keyboards
    our Telegram sender builds, and the deletions of a quick exit."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def send_message(self, *, chat_id: int, text: str, reply_markup=None, **kwargs):
        from telegram.error import BadRequest

        if not text.strip():
            raise BadRequest("Message text is empty")
        if len(text) > TELEGRAM_TEXT_LIMIT:
            raise BadRequest("Message is too long")
        rows = reply_markup.inline_keyboard if reply_markup is not None else ()
        buttons = [[{"value": b.callback_data, "label": b.text} for b in row] for row in rows]
        message_id = self.recorder.message_id()
        self.recorder.add(
            str(chat_id),
            {"kind": "telegram", "text": text, "buttons": buttons, "message_id": str(message_id)},
        )
        return SimpleNamespace(message_id=message_id)

    async def delete_messages(self, *, chat_id: int, message_ids, **kwargs) -> bool:
        ids = [str(i) for i in message_ids]
        self.recorder.add(str(chat_id), {"kind": "deleted", "message_ids": ids})
        return True

    async def get_file(self, *args, **kwargs):
        from telegram.error import BadRequest

        raise BadRequest("the simulator has no files")


class _RecordingTelegramSender(TelegramSender):
    """Our Telegram sender (inline keyboard, quick exit: unchanged) with the recording bot."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__("simulator", "http://simulator.invalid")
        self._recording_bot = _RecordingBot(recorder)

    @property
    def bot(self):
        return self._recording_bot


class SimulatedSender(Sender):
    """The queue's sender for one channel's simulated addresses (``sim:<worker>``): hands the
    worker id to the recording provider sender. Refuses any other address."""

    def __init__(self, inner: Sender) -> None:
        self.inner = inner

    @staticmethod
    def worker(address: str) -> str:
        if not str(address).startswith(SIMULATED_PREFIX):
            raise SendError("not_simulated")
        return str(address)[len(SIMULATED_PREFIX) :]

    async def send(self, channel: str, address: str, text: str, buttons, parts_sent: int = 0):
        return await self.inner.send(channel, self.worker(address), text, buttons, parts_sent)

    async def delete(self, address: str, message_ids: list[str]) -> int:
        return await self.inner.delete(self.worker(address), message_ids)

    async def download(self, ref: str, limit: int) -> bytes:
        raise SendError("simulator_no_media")


def _body(request: Request, allowed: set[str], required: set[str]) -> dict:
    """The request's JSON object, checked: ``Rejected`` (400) with a reason otherwise. The
    reasons are ours: nothing of the request is repeated (they go to the log too)."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        # Also what stops another web page from posting here: a cross-site JSON request needs
        # a CORS preflight, which this route does not answer.
        raise Rejected("Content-Type must be application/json")
    try:
        body = json.loads((request.body or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("body is not JSON (UTF-8)") from exc
    if not isinstance(body, dict):
        raise Rejected("body must be a JSON object")
    if set(body) - allowed:
        raise Rejected(f"unknown field; the fields are {', '.join(sorted(allowed))}")
    if required - set(body):
        raise Rejected(f"missing field; required: {', '.join(sorted(required))}")
    return body


def _channel(value: Any) -> str:
    if value not in CHANNELS:
        raise Rejected(f"channel must be one of {', '.join(CHANNELS)}")
    return value


def _worker(value: Any) -> str:
    if not isinstance(value, str) or not WORKER_ID.fullmatch(value):
        raise Rejected("worker must be the id the simulator gave (6-15 digits, no leading 0)")
    return value


class SimulatorInput(HelplineChannel):
    """The web simulator as one more input channel of the Rasa server (see the module)."""

    simulated = True

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.recorder = Recorder()
        self._packs = None
        self._greetings: dict[str, str] = {}
        self._on_new_message = None

    @classmethod
    def name(cls) -> str:
        return "simulator"

    @property
    def enabled(self) -> bool:
        return self.settings.simulator

    def senders(self) -> dict[str, Sender]:
        # Twilio's sender needs a "from" for each channel; no status callback (no public URL).
        twilio = dataclasses.replace(
            self.settings,
            public_url="",
            twilio_sms_number="simulator",
            twilio_whatsapp_sender="whatsapp:simulator",
        )
        return {
            "sms": SimulatedSender(_RecordingTwilioSender(twilio, self.recorder, "sms")),
            "whatsapp": SimulatedSender(_RecordingTwilioSender(twilio, self.recorder, "whatsapp")),
            "telegram": SimulatedSender(_RecordingTelegramSender(self.recorder)),
        }

    @property
    def packs(self) -> dict:
        if self._packs is None:
            from bot import locale_packs

            self._packs = {p.code: p for p in locale_packs.discover()}
        return self._packs

    # --- what the routes do -------------------------------------------------------------------
    def take(self, channel: str, worker: str, text: str, kind: str = "text") -> str | None:
        """Puts the worker's message into the queue, as its channel's webhook does: stored, then
        processed in the background. Returns its Telegram message id (for a quick exit)."""
        chat_message_id = None
        if channel == "telegram" and kind == "text":
            chat_message_id = str(self.recorder.message_id())
        inbox = self.inbox()
        if self._on_new_message is not None:
            inbox.on_new_message = self._on_new_message
        inbound = Inbound(channel, SIMULATED_PREFIX + worker, f"sim-{uuid.uuid4().hex}", text,
                          kind, chat_message_id=chat_message_id)  # fmt: skip
        contact_id = inbox.accept(inbound)
        if contact_id is not None:  # a fresh provider id: never a duplicate
            inbox.schedule(contact_id)
        return chat_message_id

    async def greeting(self, app, code: str) -> str:
        """How a worker of this language says hello: among the pack's first greeting examples,
        the one the loaded model most surely reads as a greeting in this language."""
        if code in self._greetings:
            return self._greetings[code]
        from bot import locale_packs

        pack = self.packs[code]
        candidates = [
            e.text for e in locale_packs.read_examples(pack.nlu_files) if e.intent == "greet"
        ][:GREETING_CANDIDATES] or [pack.name]
        choice, best = candidates[0], -1.0
        agent = getattr(app.ctx, "agent", None)
        if agent is not None and agent.is_ready():
            for text in candidates:
                parsed = await agent.parse_message(text)
                if parsed.get("language") != code:
                    continue
                if (parsed.get("intent") or {}).get("name") != "greet":
                    continue
                score = float(parsed.get("language_confidence") or 0.0)
                if score > best:
                    choice, best = text, score
            self._greetings[code] = choice  # cached only once the model could be asked
        return choice

    def queue_state(self, channel: str, worker: str) -> dict:
        """Where the worker's messages are in the queue: the page shows "reading...", "held
        after STOP", "could not be sent"."""
        from bot.store import queue
        from bot.store import repository as repo

        inbox = self.inbox()
        state = {"pending": 0, "queued": 0, "held": 0, "failed": 0, "opted_out": False}
        pseudonym = repo.pseudonym(inbox.pseudonym_key, channel, SIMULATED_PREFIX + worker)
        with inbox.db.session() as session:
            contact = queue.contact_by_pseudonym(session, pseudonym)
            if contact is None:
                return state
            state["opted_out"] = bool(contact.opted_out)
            for direction, status, count in queue.status_counts(session, contact.id):
                if direction == "in" and status == "pending":
                    state["pending"] += count
                elif direction == "out" and status in ("queued", "held"):
                    state[status] += count
                elif status in ("failed", "caseworker"):
                    state["failed"] += count
        return state

    # --- routes ---------------------------------------------------------------------------------
    def blueprint(self, on_new_message) -> Blueprint:
        blueprint = Blueprint("helpline_simulator", __name__)
        self._on_new_message = on_new_message
        env = self.settings.env
        if not self.enabled:
            logger.warning("simulator channel is off (HELPLINE_ENV=%s; HELPLINE_SIMULATOR=true "
                           "turns it on)", env)  # fmt: skip
        elif env != "development":
            logger.warning(
                "simulator channel is ON with HELPLINE_ENV=%s (HELPLINE_SIMULATOR=true): whoever"
                " reaches this server can chat as a worker",
                env,
            )

        self.start_queue_with_server(blueprint, on_new_message)

        def off() -> response.HTTPResponse:
            return response.json(
                {"error": "the simulator is off (HELPLINE_SIMULATOR=true turns it on)"}, status=404
            )

        def refused(exc: Rejected) -> response.HTTPResponse:
            logger.warning("simulator: unusable request (%s)", exc)
            return response.json({"error": str(exc)}, status=400)

        @blueprint.route("/", methods=["GET"])
        async def page(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return off()
            nonce = secrets.token_urlsafe(16)
            html = PAGE.read_text(encoding="utf-8").replace("{{nonce}}", nonce)
            csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                   "form-action 'none'; frame-ancestors 'none'")  # fmt: skip
            headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                       "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}  # fmt: skip
            return response.html(html, headers=headers)

        @blueprint.route("/config", methods=["GET"])
        async def config(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return off()
            languages = [
                {"code": p.code, "name": p.name, "english_name": p.english_name}
                for p in self.packs.values()
            ]
            return response.json({
                "channels": list(CHANNELS),
                "languages": languages,
                "text_limit": TEXT_LIMIT,
                "sms_segment_budget": self.settings.sms_segment_budget,
            })  # fmt: skip

        @blueprint.route("/workers", methods=["POST"], stream=True)
        async def new_worker(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return off()
            if not await read_body(request, BODY_LIMIT):
                return too_large("simulator", BODY_LIMIT)
            try:
                body = _body(request, {"channel", "language"}, {"channel"})
                channel = _channel(body["channel"])
                language = body.get("language")
                if language is not None and language not in self.packs:
                    raise Rejected(f"language must be one of {', '.join(self.packs)} or null")
            except Rejected as exc:
                return refused(exc)
            worker = str(10**11 + secrets.randbelow(9 * 10**11))  # 12 digits
            greeting = None
            if language is not None:
                text = await self.greeting(request.app, language)
                greeting = {"text": text, "message_id": self.take(channel, worker, text)}
            return response.json(
                {"worker": worker, "channel": channel, "language": language, "greeting": greeting}
            )

        @blueprint.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return off()
            if not await read_body(request, BODY_LIMIT):
                return too_large("simulator", BODY_LIMIT)
            try:
                body = _body(request, {"channel", "worker", "text", "callback"},
                             {"channel", "worker"})  # fmt: skip
                channel, worker = _channel(body["channel"]), _worker(body["worker"])
                if ("text" in body) == ("callback" in body):
                    raise Rejected("give either text (a message) or callback (a button's value)")
                if "callback" in body:
                    value = body["callback"]
                    if channel != "telegram":
                        raise Rejected("buttons exist only on Telegram")
                    if not isinstance(value, str) or not 0 < len(value) <= CALLBACK_LIMIT:
                        raise Rejected(f"callback must be a string of 1-{CALLBACK_LIMIT} chars")
                    if not self.recorder.offered(worker, value):
                        raise Rejected("that button was not offered to this worker")
                    text, kind = value, "callback"
                else:
                    text, kind = body["text"], "text"
                    if not isinstance(text, str) or not text.strip():
                        raise Rejected("text must be a non-empty string")
                    if len(text) > TEXT_LIMIT:
                        raise Rejected(f"text longer than {TEXT_LIMIT} characters")
            except Rejected as exc:
                return refused(exc)
            message_id = self.take(channel, worker, text, kind)
            return response.json({"accepted": True, "message_id": message_id})

        @blueprint.route("/messages", methods=["GET"])
        async def received(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return off()
            try:
                channel = _channel(request.args.get("channel"))
                worker = _worker(request.args.get("worker"))
                after_arg = request.args.get("after") or "0"
                if not after_arg.isdigit() or len(after_arg) > 12:
                    raise Rejected("after must be a whole number (the last seq received)")
                after = int(after_arg)
            except Rejected as exc:
                return refused(exc)
            messages = self.recorder.since(worker, after)
            return response.json({
                "messages": messages,
                "last": messages[-1]["seq"] if messages else after,
                "queue": self.queue_state(channel, worker),
            })  # fmt: skip

        return blueprint
