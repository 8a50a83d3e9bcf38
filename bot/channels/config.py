"""The channels' settings: their view of ``bot.settings`` (the one typed settings module).

A channel whose credentials are missing is off: one log line says so, and its webhook answers
503. API base URLs are settings so that tests (and sandboxes) can point the real clients at fake
servers on loopback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping

# HELPLINE_TRUST_FORWARDED=true, kept for compatibility: a proxy on this machine.
LOOPBACK_PROXIES = ("127.0.0.1", "::1")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class ChannelSettings:
    public_url: str  # https://helpline.example.org: what Twilio signs and Telegram calls
    telegram_token: str
    telegram_secret: str
    telegram_api_base: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_sms_number: str
    twilio_whatsapp_sender: str
    twilio_api_base: str
    sms_segment_budget: int
    media_max_bytes: int
    max_attempts: int
    retry_base_seconds: float
    env: str  # HELPLINE_ENV
    simulator: bool  # the local web simulator (bot/channels/simulator.py) is served
    # The proxies whose X-Forwarded-Proto/Host are believed (the URL Twilio signed); from any
    # other address those headers are ignored and HELPLINE_PUBLIC_URL is the URL.
    trusted_proxies: tuple[Network, ...]
    webhook_max_bytes: int  # a webhook's body, at most (Telegram's and Twilio's are a few KB)

    def trusts(self, address: str) -> bool:
        """Whether a request from ``address`` (the socket's peer) comes from a trusted proxy."""
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 client on a dual-stack socket
        return any(ip in network for network in self.trusted_proxies)

    @property
    def telegram_on(self) -> bool:
        return bool(self.telegram_token and self.telegram_secret)

    @property
    def twilio_on(self) -> bool:
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_sms_number or self.twilio_whatsapp_sender)
        )


def trusted_proxies(proxies: tuple[str, ...], trust_forwarded: bool = False) -> tuple[Network, ...]:
    """``HELPLINE_TRUSTED_PROXIES`` (addresses or CIDR networks, checked by ``bot.settings``),
    plus 127.0.0.1 and ::1 when the older ``HELPLINE_TRUST_FORWARDED`` says true."""
    entries = [*proxies, *(LOOPBACK_PROXIES if trust_forwarded else ())]
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def from_settings(settings) -> ChannelSettings:
    """The channels' view of ``bot.settings``."""
    return ChannelSettings(
        public_url=settings.public_url,
        telegram_token=settings.telegram_token,
        telegram_secret=settings.telegram_secret,
        telegram_api_base=settings.telegram_api_base,
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token,
        twilio_sms_number=settings.twilio_sms_number,
        twilio_whatsapp_sender=settings.twilio_whatsapp_sender,
        twilio_api_base=settings.twilio_api_base,
        sms_segment_budget=settings.sms_segment_budget,
        media_max_bytes=settings.media_max_bytes,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        env=settings.env,
        simulator=settings.simulator_on,
        trusted_proxies=trusted_proxies(settings.trusted_proxies, settings.trust_forwarded),
        webhook_max_bytes=settings.webhook_max_bytes,
    )


def load(environ: Mapping[str, str] | None = None) -> ChannelSettings:
    """The channels' settings from the environment (``bot.settings.parse``: no key needed)."""
    from bot.settings import parse

    return from_settings(parse(environ))
