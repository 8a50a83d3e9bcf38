"""Telegram: ``POST /webhooks/telegram/webhook``.

Verified by ``X-Telegram-Bot-Api-Secret-Token`` (the secret given to ``setWebhook``; compared in
constant time) before the body is parsed, and only once its size is known to be within
``HELPLINE_WEBHOOK_MAX_BYTES`` (413 otherwise); Telegram's API is never called to "verify" an
update. An update delivered again (same ``update_id``) is acknowledged and not processed twice.
Updates are read with python-telegram-bot's ``Update.de_json``; replies go out through its
``Bot`` (``TELEGRAM_API_BASE`` points it elsewhere, for tests). Private chats only: a group is
no place for a worker's complaint, so group updates are acknowledged and dropped, as are edits
and updates with nothing to read (stickers). Menus become inline keyboards whose buttons send
the option's number (callback data of 1-2 bytes, far under Telegram's 64).
"""

from __future__ import annotations

import hmac
import logging

from sanic.request import Request

from bot.channels.base import HelplineChannel, Rejected
from bot.channels.contract import Inbound, Sender, SendError

logger = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramSender(Sender):
    def __init__(self, token: str, api_base: str) -> None:
        self.token = token
        self.api_base = api_base
        self._bot = None

    @property
    def bot(self):
        if self._bot is None:
            from telegram import Bot

            self._bot = Bot(
                self.token,
                base_url=f"{self.api_base}/bot",
                base_file_url=f"{self.api_base}/file/bot",
            )
        return self._bot

    async def delete(self, address: str, message_ids: list[str]) -> int:
        from telegram.error import NetworkError, TelegramError

        ids = sorted({int(i) for i in message_ids if str(i).isdigit()})
        deleted = 0
        for start in range(0, len(ids), 100):  # deleteMessages takes at most 100 ids
            batch = ids[start : start + 100]
            try:
                if await self.bot.delete_messages(chat_id=int(address), message_ids=batch):
                    deleted += len(batch)
            except NetworkError as exc:
                raise SendError(f"telegram_{type(exc).__name__}", retry=True) from exc
            except TelegramError as exc:  # too old, already deleted: nothing more to do
                logger.info("quick exit: Telegram refused some deletions (%s)", type(exc).__name__)
        return deleted

    async def download(self, ref: str, limit: int) -> bytes:
        from telegram.error import NetworkError, TelegramError

        from bot.channels.contract import TooLarge

        try:
            file = await self.bot.get_file(ref)
            if file.file_size and file.file_size > limit:
                raise TooLarge(file.file_size)
            data = bytes(await file.download_as_bytearray())
        except NetworkError as exc:
            raise SendError(f"telegram_{type(exc).__name__}", retry=True) from exc
        except TelegramError as exc:
            raise SendError(f"telegram_{type(exc).__name__}") from exc
        if len(data) > limit:
            raise TooLarge(len(data))
        return data

    async def send(self, channel: str, address: str, text: str, buttons, parts_sent=0) -> str:
        # One Telegram message per reply: nothing to skip (``parts_sent`` is for SMS parts).
        from telegram import InlineKeyboardButton, InlineKeyboardMarkup
        from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

        markup = None
        if buttons:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(f"{value} {label}"[:64], callback_data=value)]
                 for value, label in buttons]
            )  # fmt: skip
        try:
            sent = await self.bot.send_message(chat_id=int(address), text=text, reply_markup=markup)
        except RetryAfter as exc:  # Telegram says how long to wait (in the body, not a header)
            from bot.channels.ratelimit import telegram_retry_after

            raise SendError(
                "telegram_429", retry=True, retry_after=telegram_retry_after(exc)
            ) from exc
        except (BadRequest, Forbidden) as exc:  # BadRequest is a NetworkError: caught first
            raise SendError(f"telegram_{type(exc).__name__}") from exc
        except NetworkError as exc:  # timeouts, 5xx, connection errors
            raise SendError(f"telegram_{type(exc).__name__}", retry=True) from exc
        except TelegramError as exc:
            raise SendError(f"telegram_{type(exc).__name__}") from exc
        return str(sent.message_id)


class TelegramInput(HelplineChannel):
    @classmethod
    def name(cls) -> str:
        return "telegram"

    @property
    def enabled(self) -> bool:
        return self.settings.telegram_on or self.polling

    def verify(self, request: Request) -> bool:
        given = request.headers.get(SECRET_HEADER, "")
        return bool(given) and hmac.compare_digest(
            given.encode(), self.settings.telegram_secret.encode()
        )

    @property
    def polling(self) -> bool:
        """A token but no public URL: long polling, so a newcomer can chat from a phone without
        a public URL (``make run`` with only ``TELEGRAM_BOT_TOKEN`` set)."""
        return bool(self.settings.telegram_token) and not self.settings.public_url

    def parse(self, request: Request) -> list[Inbound]:
        try:
            data = request.json
        except Exception as exc:  # noqa: BLE001 - Sanic raises its own error for bad JSON
            raise Rejected("body is not JSON") from exc
        return self.parse_update(data)

    def parse_update(self, data) -> list[Inbound]:
        from telegram import Update

        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise Rejected("not a Telegram update")
        if not {"message", "callback_query"} & data.keys():
            return []  # edits, polls, channel posts, member changes...: acknowledged, not taken
        try:
            update = Update.de_json(data, None)
        except (KeyError, TypeError, ValueError) as exc:
            raise Rejected("not a Telegram update") from exc
        provider_id = str(update.update_id)
        if update.callback_query is not None:
            query = update.callback_query
            chat = query.message.chat if query.message else None
            if chat is None or chat.type != "private" or not query.data:
                return []
            return [Inbound("telegram", str(chat.id), provider_id, query.data[:64], "callback")]
        message = update.message
        if message is None or message.chat.type != "private":
            return []  # edits, channel posts, groups: acknowledged, not taken
        text = message.text or message.caption or ""
        media = []
        if message.photo:
            media.append({"ref": message.photo[-1].file_id, "content_type": "image/jpeg",
                          "kind": "photo"})  # fmt: skip
        for kind, default in (("voice", "audio/ogg"), ("audio", "audio/mpeg"),
                              ("document", "application/octet-stream")):  # fmt: skip
            item = getattr(message, kind)
            if item is not None:
                content_type = getattr(item, "mime_type", None) or default
                media.append({"ref": item.file_id, "content_type": content_type, "kind": kind})
        if media:
            # The caption is what the worker wrote; without one the dialogue acknowledges the file.
            text = text or f"[{media[0]['kind']}]"
            return [
                Inbound("telegram", str(message.chat.id), provider_id, text[:4096], "media",
                        media, str(message.message_id))
            ]  # fmt: skip
        if not text:
            return []  # stickers and the like: nothing to read
        return [
            Inbound("telegram", str(message.chat.id), provider_id, text[:4096], "text",
                    chat_message_id=str(message.message_id))
        ]  # fmt: skip

    def senders(self) -> dict[str, Sender]:
        return {"telegram": self.sender}

    @property
    def sender(self) -> TelegramSender:
        if getattr(self, "_sender", None) is None:
            self._sender = TelegramSender(
                self.settings.telegram_token, self.settings.telegram_api_base
            )
        return self._sender

    def extra_routes(self, blueprint) -> None:
        @blueprint.listener("after_server_start")
        async def start_polling(app, loop) -> None:
            if self.polling:
                logger.warning("telegram: no HELPLINE_PUBLIC_URL, so long polling (development)")
                self._poller = loop.create_task(self.poll())

    async def poll(self, timeout: int = 25) -> None:
        """Long polling: the same path as the webhook (parse, store, acknowledge by offset)."""
        import asyncio

        from telegram.error import TelegramError

        bot = self.sender.bot
        inbox = self.inbox()
        await bot.delete_webhook()  # Telegram refuses getUpdates while a webhook is set
        offset = None
        while True:
            try:
                updates = await bot.get_updates(
                    offset=offset, timeout=timeout, allowed_updates=["message", "callback_query"]
                )
            except TelegramError as exc:
                logger.warning("telegram polling failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(2)
                continue
            for update in updates:
                try:
                    messages = self.parse_update(update.to_dict())
                except Rejected:
                    messages = []
                for message in messages:
                    contact_id = inbox.accept(message)
                    if contact_id is not None:
                        inbox.schedule(contact_id)
                offset = update.update_id + 1


async def set_webhook(settings) -> bool:
    """``helpline telegram set-webhook``: registers our URL with the secret token."""
    from telegram import Bot

    if not settings.telegram_on or not settings.public_url:
        raise ValueError(
            "set TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET and HELPLINE_PUBLIC_URL first"
        )
    async with Bot(settings.telegram_token, base_url=f"{settings.telegram_api_base}/bot") as bot:
        return await bot.set_webhook(
            url=f"{settings.public_url}/webhooks/telegram/webhook",
            secret_token=settings.telegram_secret,
            allowed_updates=["message", "callback_query"],
        )
