"""Rasa's REST channel (``POST /webhooks/rest/webhook``), with no way in as a real worker.

Rasa's own channel lets the caller choose ``sender``, the conversation's id. Our channels' queue
gives a real worker's conversation the worker's pseudonym (64 hex digits, ``bot.store.repository
.pseudonym``) as its id, and the actions take an id of that shape for the worker's own
(``actions.services``): through Rasa's channel, anyone who learnt a pseudonym could read and
write that worker's conversation and case. So a sender that has the shape of a pseudonym, or of
a web simulator address (``sim:...``), is refused with 400 and one log line (which does not
repeat it), and the caller's ``input_channel`` is ignored: a REST conversation is always
``rest``, never passed off as Telegram, SMS or WhatsApp.

The channel is for development and tests; in production ``helpline run`` does not serve it.
"""

from __future__ import annotations

import logging
import re

from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic.exceptions import InvalidUsage
from sanic.request import Request

from bot.store.repository import SIMULATED_PREFIX

logger = logging.getLogger(__name__)

# A keyed hash as hex: the pseudonyms are 64 digits; shorter ones down to 32 are refused too.
PSEUDONYM_SHAPE = re.compile(r"[0-9a-fA-F]{32,}")


def internal_sender(sender: str) -> str | None:
    """What ``sender`` looks like when it has the shape of an id only our queue gives (see the
    module): ``pseudonym`` or ``simulator address``; None for any other id."""
    sender = sender.strip()
    if PSEUDONYM_SHAPE.fullmatch(sender):
        return "pseudonym"
    if sender.lower().startswith(SIMULATED_PREFIX):
        return "simulator address"
    return None


class RestInput(RasaRestInput):
    async def _extract_sender(self, req: Request) -> str | None:
        body = req.json if isinstance(req.json, dict) else {}
        sender = body.get("sender")
        shape = internal_sender(str(sender)) if sender is not None else None
        if shape:
            logger.warning("rest channel: request refused (the sender id is a %s)", shape)
            raise InvalidUsage("this sender id is reserved; choose another")
        return sender

    def _extract_input_channel(self, req: Request) -> str:
        return self.name()
