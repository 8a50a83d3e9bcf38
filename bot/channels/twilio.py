"""Twilio SMS and WhatsApp, one handler: ``POST /webhooks/twilio/webhook`` and the delivery
status callback ``POST /webhooks/twilio/status``.

Verified with twilio's ``RequestValidator`` (``X-Twilio-Signature``, HMAC-SHA1 of the URL and
the form parameters with the auth token) against the public URL Twilio called:
``HELPLINE_PUBLIC_URL`` plus the path or, for a request from a proxy named in
``HELPLINE_TRUSTED_PROXIES``, the ``X-Forwarded-Proto``/``X-Forwarded-Host`` it sets (from any
other address those headers are ignored: a forged host cannot make a signature valid). A request
for another account is refused too. Delivery status callbacks only move a reply forward
(``record_status``): a replayed or late one changes nothing. Bodies over
``HELPLINE_WEBHOOK_MAX_BYTES`` get 413 (``base.read_body``). WhatsApp addresses carry the
``whatsapp:`` prefix and are their own channel.
Replies go out through the twilio client (``TWILIO_API_BASE`` points it elsewhere, for tests);
SMS replies are split at sentence ends into numbered one-segment parts, never more than
``HELPLINE_SMS_SEGMENT_BUDGET`` (default 4) per reply: longer ones are shortened.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from sanic import Blueprint, response
from sanic.request import Request

from bot.channels.base import HelplineChannel, Rejected, read_body, too_large
from bot.channels.contract import Inbound, Sender, SendError
from bot.sms import split_for_sms

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Twilio-Signature"
WHATSAPP_WINDOW_CLOSED = 63016  # "outside the allowed window": a template message is needed
# Pauses (seconds) before trying again to delete what Twilio would not delete yet (erasure).
ERASE_PAUSES = (60.0, 300.0, 1800.0)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio's delivery statuses that say a reply reached the phone, and those that say it never
# will. Only a reply we hold as "sent" takes either: Twilio's order is sent < delivered < read,
# and failed/undelivered exclude delivered, so anything else is a replay or came late.
REACHED = ("delivered", "read")
NOT_DELIVERED = ("failed", "undelivered")


class TwilioSender(Sender):
    def __init__(self, settings) -> None:
        self.settings = settings
        self._client = None
        self._client_lock = threading.Lock()

    @property
    def client(self):
        # Sends run in worker threads: the client is made once, under a lock, and published only
        # once it points at TWILIO_API_BASE (two first sends at once must not race past that).
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from twilio.rest import Client

                    client = Client(
                        self.settings.twilio_account_sid, self.settings.twilio_auth_token
                    )
                    client.api.base_url = self.settings.twilio_api_base
                    self._client = client
        return self._client

    def _send_sync(self, channel: str, address: str, text: str, parts_sent: int = 0) -> str:
        from twilio.base.exceptions import TwilioRestException

        if channel == "whatsapp":
            sender, parts = self.settings.twilio_whatsapp_sender, [text]
        else:
            sender = self.settings.twilio_sms_number
            parts = split_for_sms(text, self.settings.sms_segment_budget)
        if not sender:
            raise SendError(f"no_{channel}_sender")
        callback = (
            f"{self.settings.public_url}/webhooks/twilio/status"
            if self.settings.public_url
            else None
        )
        first = None
        # Parts an earlier try already sent are skipped: a worker never gets "(1/3)" twice.
        for index, part in enumerate(parts[parts_sent:], start=parts_sent):
            kwargs = {"to": address, "from_": sender, "body": part}
            if callback:
                kwargs["status_callback"] = callback
            try:
                message = self.client.messages.create(**kwargs)
            except TwilioRestException as exc:
                if exc.code == WHATSAPP_WINDOW_CLOSED:
                    raise SendError("twilio_63016", hold=True) from exc
                retry = exc.status == 429 or (exc.status or 0) >= 500
                raise SendError(f"twilio_{exc.status}_{exc.code or ''}", retry=retry,
                                parts_sent=index, first_id=first) from exc  # fmt: skip
            except OSError as exc:  # connection errors, timeouts (requests' errors are OSErrors)
                raise SendError(f"twilio_{type(exc).__name__}", retry=True, parts_sent=index,
                                first_id=first) from exc  # fmt: skip
            first = first or message.sid
        return first

    async def send(self, channel: str, address: str, text: str, buttons, parts_sent=0) -> str:
        return await asyncio.to_thread(self._send_sync, channel, address, text, parts_sent)

    def delete_stored(self, sids: list[str], pauses: tuple[float, ...] = ERASE_PAUSES) -> int:
        """Deletes Twilio's stored copies of these messages, and their media, through its API
        (``DELETE .../Messages/<sid>.json``), for an erasure; how many are gone. Twilio refuses
        a message it is still processing (20009: wait a minute), and may refuse for a while
        (429, 5xx): those are tried again after each pause. Blocking: run it in a thread."""
        from twilio.base.exceptions import TwilioRestException

        pending, gone = list(sids), 0
        for pause in (0.0, *pauses):
            time.sleep(pause)
            later = []
            for sid in pending:
                try:
                    self.client.messages(sid).delete()
                    gone += 1
                except TwilioRestException as exc:
                    if exc.status == 404:
                        gone += 1  # deleted already
                    elif exc.code == 20009 or exc.status == 429 or (exc.status or 0) >= 500:
                        later.append(sid)
                    else:  # the account does not allow it
                        logger.warning("twilio refused to delete a stored message (%s)", exc.code)
                except OSError:
                    later.append(sid)
            pending = later
            if not pending:
                break
        if pending:
            logger.warning("twilio: %d of %d stored messages not deleted", len(pending), len(sids))
        return gone

    def _download_sync(self, url: str, limit: int) -> bytes:
        import base64
        import urllib.error
        import urllib.request

        from bot.channels.contract import TooLarge

        # Only Twilio's own media URLs, with Twilio's authentication: never fetch an address a
        # request merely claims (that would let anyone make us fetch anything).
        if not url.startswith(self.settings.twilio_api_base + "/"):
            raise SendError("media_url_not_twilio")
        request = urllib.request.Request(url)
        credentials = f"{self.settings.twilio_account_sid}:{self.settings.twilio_auth_token}"
        request.add_unredirected_header(
            "Authorization", "Basic " + base64.b64encode(credentials.encode()).decode()
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                length = int(response.headers.get("Content-Length") or 0)
                if length > limit:
                    raise TooLarge(length)
                data = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            retry = exc.code == 429 or exc.code >= 500
            raise SendError(f"twilio_media_{exc.code}", retry=retry) from exc
        except OSError as exc:
            raise SendError(f"twilio_media_{type(exc).__name__}", retry=True) from exc
        if len(data) > limit:
            raise TooLarge(len(data))
        return data

    async def download(self, ref: str, limit: int) -> bytes:
        return await asyncio.to_thread(self._download_sync, ref, limit)


def form_params(request: Request) -> dict[str, str]:
    """The form as Twilio signed it: blank values kept (Sanic's ``request.form`` drops them,
    which would break the signature of a media message without text)."""
    import urllib.parse

    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        body = request.body.decode("latin-1")
    return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}


class TwilioInput(HelplineChannel):
    @classmethod
    def name(cls) -> str:
        return "twilio"

    @property
    def enabled(self) -> bool:
        return self.settings.twilio_on

    def public_url(self, request: Request) -> str:
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        if self.settings.trusts(request.ip):
            proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0]
            host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0]
            return f"{proto.strip()}://{host.strip()}{path}"
        return f"{self.settings.public_url}{path}"

    def verify(self, request: Request) -> bool:
        from twilio.request_validator import RequestValidator

        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            return False
        params = form_params(request)
        validator = RequestValidator(self.settings.twilio_auth_token)
        if not validator.validate(self.public_url(request), params, signature):
            return False
        return params.get("AccountSid") == self.settings.twilio_account_sid

    def parse(self, request: Request) -> list[Inbound]:
        form = form_params(request)
        sid = form.get("MessageSid") or form.get("SmsSid")
        sender = form.get("From")
        if not sid or not sender:
            raise Rejected("not a Twilio message")
        channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
        text = form.get("Body") or ""
        media = []
        for i in range(min(int(form.get("NumMedia") or 0), 10)):
            url = form.get(f"MediaUrl{i}")
            if url:
                content_type = form.get(f"MediaContentType{i}") or "application/octet-stream"
                media.append({"ref": url, "content_type": content_type, "kind": "media"})
        if media:
            return [Inbound(channel, sender, sid, (text or "[media]")[:4096], "media", media)]
        if not text:
            return []
        return [Inbound(channel, sender, sid, text[:4096], "text")]

    def acknowledge(self) -> response.HTTPResponse:
        return response.text(EMPTY_TWIML, content_type="text/xml")

    def senders(self) -> dict[str, Sender]:
        sender = TwilioSender(self.settings)
        return {"sms": sender, "whatsapp": sender}

    def extra_routes(self, blueprint: Blueprint) -> None:
        @blueprint.route("/status", methods=["POST"], stream=True)
        async def status(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return response.json({"error": "twilio channel is off"}, status=503)
            if not await read_body(request, self.settings.webhook_max_bytes):
                return too_large("twilio status callback", self.settings.webhook_max_bytes)
            if not self.verify(request):
                logger.warning("twilio status callback: request refused (signature)")
                return response.json({"error": "forbidden"}, status=403)
            form = form_params(request)
            self.record_status(
                form.get("MessageSid") or "",
                form.get("MessageStatus") or "",
                form.get("ErrorCode"),
            )
            return self.acknowledge()

    def record_status(self, sid: str, status: str, error_code: str | None) -> None:
        """A reply's delivery status, forward only: ``sent`` becomes ``delivered`` (``read``
        counts as delivered) or ``failed`` (or, for a closed WhatsApp window, goes by SMS or
        is held), once. A callback for a reply in any other state (delivered, failed, queued
        for its remaining SMS parts) changes nothing: a replayed ``failed`` never marks a
        delivered reply failed nor sends it again."""
        from bot.store import queue

        inbox = self.inbox()
        with inbox.db.session() as session:
            message = queue.reply_by_provider_id(session, sid)
            if message is None or message.status != "sent":
                return
            if status in REACHED:
                message.status = "delivered"
            elif status in NOT_DELIVERED:
                if str(error_code) == str(WHATSAPP_WINDOW_CLOSED):
                    inbox.window_closed(message)  # by SMS if the worker agreed, else held
                    return
                message.error = f"twilio_{error_code or status}"[:64]
                message.status = "failed"
                inbox.outbox.alert("undelivered", message)
