"""The channel's own words, handled before the NLU and answered in the worker's language.

STOP is confirmed once and then nothing more is sent (the confirmation is the only message that
passes an opt-out); START is confirmed and goes on to the dialogue; HELP says what this is and
how to stop, then the dialogue shows the menu. On SMS a language whose pack has ``sms_plain``
words (Vietnamese) is offered SMS without accents once (GSM-7, half the segments); the worker's
choice is kept on the contact. The quick exit (Telegram) is recognised here and carried out by
the queue. Words come from each pack's ``pack.yml`` ``keywords`` (English in the en pack)."""

from __future__ import annotations

import logging

from bot.channels import texts
from bot.store import queue
from bot.store import repository as repo
from bot.store.models import Message
from nlu.commands import CommandWords

logger = logging.getLogger(__name__)

CHANNEL_COMMANDS = ("stop", "start", "help", "quick_exit", "sms_plain", "sms_accents")
CHANNEL_AUTHOR = "channel"  # replies of the channel itself (START, HELP...), not of the dialogue
STOP_AUTHOR = "channel:stop"  # the STOP confirmation: the one message that passes an opt-out

# What ``ChannelKeywords.handle`` decided for a message.
DONE = "done"  # answered here (STOP, an SMS accents choice): no dialogue turn
QUICK_EXIT = "quick_exit"  # clear the chat, nothing else
DIALOGUE = "dialogue"  # go on to Rasa (possibly after a START or HELP reply)


class _NoPack:
    meta: dict = {}


class ChannelKeywords:
    def __init__(self, packs: dict) -> None:
        from bot.i18n import Translations

        self.packs = packs
        self.words = CommandWords.from_packs(packs.values(), CHANNEL_COMMANDS)
        self.translations = Translations()

    def handle(self, session, message: Message) -> str:
        """Handles a channel word in ``message`` (inside the session that reads it)."""
        contact = message.contact
        channel = message.channel
        command, keyword_language = self.words.command_and_language(message.text or "")
        language = contact.language or keyword_language
        if command == "stop":
            contact.opted_out = True
            message.status = "done"
            start = self.keyword(language, "start")
            self.reply(session, message, language, texts.STOPPED, author=STOP_AUTHOR, start=start)
            logger.info("worker opted out (STOP) on %s", channel)
            return DONE
        if command in ("sms_plain", "sms_accents") and channel == "sms":
            contact.sms_plain = command == "sms_plain"
            contact.sms_plain_offered = True
            message.status = "done"
            reply = texts.SMS_PLAIN_ON if contact.sms_plain else texts.SMS_PLAIN_OFF
            self.reply(session, message, language, reply)
            return DONE
        if command == "start":
            contact.opted_out = False
            self.reply(session, message, language, texts.STARTED)
        if command == "help":
            self.reply(session, message, language, texts.HELP_INFO,
                       stop=self.keyword(language, "stop"))  # fmt: skip
        if command == "quick_exit" and channel == "telegram":
            message.status = "done"
            return QUICK_EXIT
        return DIALOGUE

    def keyword(self, language: str | None, command: str) -> str:
        """The first word of ``command`` in the pack of ``language`` (English otherwise), in
        capitals, for a reply that tells the worker what to write."""
        for code in (language, "en"):
            words = ((self.packs.get(code or "") or _NoPack).meta.get("keywords") or {}).get(
                command
            )
            if words:
                return str(words[0]).upper()
        return command.upper()

    def reply(self, session, message: Message, language: str | None, text: str,
              author: str = CHANNEL_AUTHOR, **values) -> Message:  # fmt: skip
        """Queues a reply of the channel itself, in the worker's language (delivered in order
        with the dialogue's replies; a STOP confirmation passes the opt-out). Once per message:
        a message retried after Rasa failed does not get it twice."""
        already = queue.reply_of(session, message.id, author)
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
            **queue.queued_reply(message.id),
        )
        return out

    def offer_plain_sms(self, session, message: Message) -> None:
        """Once per SMS worker whose language reads well without accents (its pack has
        ``sms_plain`` words): the offer, after the dialogue's replies."""
        contact = message.contact
        if message.channel != "sms" or contact.sms_plain_offered or contact.opted_out:
            return
        pack = self.packs.get(contact.language or "")
        if pack is None or not (pack.meta.get("keywords") or {}).get("sms_plain"):
            return
        contact.sms_plain_offered = True
        self.reply(
            session, message, contact.language, texts.SMS_PLAIN_OFFER,
            plain=self.keyword(contact.language, "sms_plain"),
            accents=self.keyword(contact.language, "sms_accents"),
        )  # fmt: skip
