"""What every provider's input channel shares: verify, store, acknowledge, process later.

A provider module (``telegram.py``, ``twilio.py``) says how to verify a request, how to read
the messages out of it, what to answer the provider, and how to send a reply. This base does
the rest, the same way for every provider: a body over ``HELPLINE_WEBHOOK_MAX_BYTES`` gets 413
and one log line, before it is read in full (the route streams it); a request that fails
verification gets 403 and one log line without the payload, before anything is parsed; an
accepted message is stored before the acknowledgement; a duplicate (same provider id) is
acknowledged like the first delivery (a provider retries anything but a 2xx) and not processed
again; processing happens in the background (``bot.channels.inbox``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import InputChannel
from sanic import Blueprint, response
from sanic.request import Request

from bot.channels import config as channel_config
from bot.channels.contract import Inbound, Sender, SendError
from bot.channels.inbox import Inbox
from bot.store.repository import SIMULATED_PREFIX  # the web simulator's addresses

logger = logging.getLogger(__name__)


async def read_body(request: Request, limit: int) -> bool:
    """Reads the body of a streamed route (``stream=True``) into ``request.body``, at most
    ``limit`` bytes: False, with nothing kept, when the declared length or the bytes that come
    (chunked bodies declare none) are more. Sanic then reads the rest and throws it away, so
    the sender gets the answer rather than a reset connection."""
    declared = request.headers.get("Content-Length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return False
    body = bytearray()
    async for chunk in request.stream:
        body += chunk
        if len(body) > limit:
            return False
    request.body = bytes(body)
    return True


def too_large(name: str, limit: int) -> response.HTTPResponse:
    logger.warning("%s: request refused, body over %d bytes", name, limit)
    return response.json({"error": f"request body over {limit} bytes"}, status=413)


class SenderRouter(Sender):
    """One channel's sender in the shared queue, chosen by the address: the provider's sender for
    real addresses, the simulator's for simulated ones (``sim:...``). Neither ever gets the
    other's: with Twilio or Telegram configured, a simulated worker's reply still never reaches
    them, and a real worker's never lands in the simulator. No Twilio or Telegram address starts
    with ``sim:`` (phone numbers, ``whatsapp:+...``, numeric chat ids)."""

    def __init__(self) -> None:
        self.provider: Sender | None = None
        self.simulator: Sender | None = None

    def _for(self, address: str) -> Sender:
        if str(address).startswith(SIMULATED_PREFIX):
            if self.simulator is None:
                raise SendError("no_simulator")
            return self.simulator
        if self.provider is None:
            raise SendError("no_sender")
        return self.provider

    async def send(self, channel: str, address: str, text: str, buttons, parts_sent: int = 0):
        return await self._for(address).send(channel, address, text, buttons, parts_sent)

    async def delete(self, address: str, message_ids: list[str]) -> int:
        return await self._for(address).delete(address, message_ids)

    async def download(self, ref: str, limit: int) -> bytes:
        # Only real messages carry media (the simulator sends none): the provider fetches it.
        if self.provider is None:
            raise SendError("no_sender")
        return await self.provider.download(ref, limit)


class Rejected(Exception):
    """A request that is not a valid delivery from the provider (answered 400)."""


class HelplineChannel(InputChannel):
    """Base of our input channels; ``name()`` is the URL prefix (/webhooks/<name>/webhook)."""

    simulated = False  # True for the web simulator: its senders serve ``sim:`` addresses only

    def __init__(self, settings: channel_config.ChannelSettings | None = None) -> None:
        self.settings = settings or channel_config.load()
        self._inbox: Inbox | None = None

    # --- what a provider defines --------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        raise NotImplementedError

    def verify(self, request: Request) -> bool:
        raise NotImplementedError

    def parse(self, request: Request) -> list[Inbound]:
        raise NotImplementedError

    def acknowledge(self) -> response.HTTPResponse:
        return response.json({"ok": True})

    def senders(self) -> dict[str, Sender]:
        raise NotImplementedError

    def extra_routes(self, blueprint: Blueprint) -> None:
        """Other routes (a delivery-status callback)."""

    # --- shared -----------------------------------------------------------------------------
    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> HelplineChannel:
        return cls()

    def inbox(self) -> Inbox:
        """The shared queue of every channel in this process, created on first use."""
        if self._inbox is None:
            self._inbox = shared_inbox(self.settings)
            for channel, sender in self.senders().items():
                router = self._inbox.senders.get(channel)
                if not isinstance(router, SenderRouter):
                    router = self._inbox.senders[channel] = SenderRouter()
                if self.simulated:
                    router.simulator = sender
                else:
                    router.provider = sender
        return self._inbox

    def start_queue_with_server(
        self, blueprint: Blueprint, on_new_message: Callable[[Any], Awaitable[Any]]
    ) -> None:
        """Starts the shared queue (processing, delivery, resuming) once the server runs."""

        @blueprint.listener("after_server_start")
        async def start_queue(app, loop) -> None:
            if self.enabled:
                inbox = self.inbox()
                inbox.on_new_message = on_new_message
                inbox.start()

        @blueprint.listener("before_server_stop")
        async def stop_queue(app, loop) -> None:
            # Lets go of the workers this process holds: another process takes them at once
            # instead of after the lease.
            if self._inbox is not None:
                await self._inbox.stop()

    def blueprint(self, on_new_message: Callable[[Any], Awaitable[Any]]) -> Blueprint:
        blueprint = Blueprint(f"helpline_{self.name()}", __name__)
        if not self.enabled:
            logger.warning("%s channel is off: its credentials are not set", self.name())

        self.start_queue_with_server(blueprint, on_new_message)

        @blueprint.route("/", methods=["GET"])
        async def health(request: Request) -> response.HTTPResponse:
            return response.json({"status": "ok" if self.enabled else "off"})

        @blueprint.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> response.HTTPResponse:
            if not self.enabled:
                return response.json({"error": f"{self.name()} channel is off"}, status=503)
            if getattr(self, "polling", False):
                return response.json({"error": "polling mode: no webhook"}, status=503)
            if not await read_body(request, self.settings.webhook_max_bytes):
                return too_large(f"{self.name()} webhook", self.settings.webhook_max_bytes)
            if not self.verify(request):
                logger.warning("%s webhook: request refused (signature or secret)", self.name())
                return response.json({"error": "forbidden"}, status=403)
            try:
                messages = self.parse(request)
            except Rejected as exc:
                logger.warning("%s webhook: unusable request (%s)", self.name(), exc)
                return response.json({"error": str(exc)}, status=400)
            inbox = self.inbox()
            inbox.on_new_message = on_new_message
            for message in messages:
                # Stored (and committed) before the acknowledgement, on a worker thread.
                contact_id = await asyncio.to_thread(inbox.accept, message)
                if contact_id is None:  # a provider's retry: acknowledged, processed once
                    logger.info("%s webhook: duplicate delivery acknowledged", self.name())
                    continue
                inbox.schedule(contact_id)
            return self.acknowledge()

        self.extra_routes(blueprint)
        return blueprint


_shared: Inbox | None = None


def shared_inbox(settings: channel_config.ChannelSettings) -> Inbox:
    global _shared
    if _shared is None:
        from bot import locale_packs
        from bot import settings as app_settings
        from bot.channels.inbox import QueueOptions
        from bot.emergency import notifier_from_settings
        from bot.store import open_database

        app = app_settings.load()
        _shared = Inbox(
            open_database(app),
            app.pseudonym_key,
            settings,
            senders={},
            packs=locale_packs.discover(),
            notifier=notifier_from_settings(app),
            actions_health_url=_actions_health_url(),
            options=QueueOptions(
                lease_seconds=app.queue_lease_seconds,
                concurrency=app.queue_concurrency,
                batch=app.queue_batch,
            ),
            limiter=_rate_limiter(app),
        )
    return _shared


def _actions_health_url() -> str | None:
    from bot.settings import parse

    url = parse().actions_url  # HELPLINE_ACTIONS_URL, set by `helpline run`
    return url.replace("/webhook", "/health") if url else None


def _rate_limiter(app):
    """Per-sender outbound limits, shared through Redis when several processes send."""
    import os

    from bot.channels import ratelimit

    return ratelimit.limiter_for(
        app.redis_url or None, ratelimit.limits_from_env(os.environ), secret=app.pseudonym_key
    )
