"""Channel settings, from the environment (see README, `.env.example`).

A channel whose credentials are missing is off: one log line says so, and its webhook answers
503. API base URLs are settings so that tests (and sandboxes) can point the real clients at fake
servers on loopback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Iterable, Mapping

# HELPLINE_TRUST_FORWARDED=true, kept for compatibility: a proxy on this machine.
LOOPBACK_PROXIES = ("127.0.0.1", "::1")
WEBHOOK_MAX_BYTES = 256 * 1024  # a webhook's body, at most (Telegram's and Twilio's are a few KB)
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
    env: str = "development"  # HELPLINE_ENV
    simulator: bool = False  # the local web simulator (bot/channels/simulator.py) is served
    # The proxies whose X-Forwarded-Proto/Host are believed (the URL Twilio signed); from any
    # other address those headers are ignored and HELPLINE_PUBLIC_URL is the URL.
    trusted_proxies: tuple[Network, ...] = ()
    webhook_max_bytes: int = WEBHOOK_MAX_BYTES

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


def simulator_enabled(env: str, flag: str) -> bool:
    """The web simulator is on in development unless ``HELPLINE_SIMULATOR`` says otherwise, and
    anywhere else (test, production) only when ``HELPLINE_SIMULATOR`` explicitly says true: it
    lets whoever reaches the server chat as a worker."""
    flag = flag.strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    return env == "development"


def trusted_proxies(proxies: str, trust_forwarded: str = "") -> tuple[Network, ...]:
    """``HELPLINE_TRUSTED_PROXIES`` (comma-separated addresses or CIDR networks), plus 127.0.0.1
    and ::1 when the older ``HELPLINE_TRUST_FORWARDED`` says true. ``ValueError`` names a bad
    entry."""
    from bot.settings import flag

    entries: Iterable[str] = [p.strip() for p in proxies.split(",") if p.strip()]
    if flag(trust_forwarded):  # a yes/no value; anything else is an error
        entries = [*entries, *LOOPBACK_PROXIES]
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"HELPLINE_TRUSTED_PROXIES: {entry!r} is not an address") from exc
    return tuple(networks)


def load(environ: Mapping[str, str] | None = None) -> ChannelSettings:
    env = os.environ if environ is None else environ

    def get(name: str, default: str = "") -> str:
        return (env.get(name) or default).strip()

    helpline_env = get("HELPLINE_ENV", "production").lower()  # none: production
    return ChannelSettings(
        public_url=get("HELPLINE_PUBLIC_URL").rstrip("/"),
        telegram_token=get("TELEGRAM_BOT_TOKEN"),
        telegram_secret=get("TELEGRAM_WEBHOOK_SECRET"),
        telegram_api_base=get("TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/"),
        twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
        twilio_sms_number=get("TWILIO_SMS_NUMBER"),
        twilio_whatsapp_sender=get("TWILIO_WHATSAPP_SENDER"),
        twilio_api_base=get("TWILIO_API_BASE", "https://api.twilio.com").rstrip("/"),
        sms_segment_budget=int(get("HELPLINE_SMS_SEGMENT_BUDGET", "4")),
        media_max_bytes=int(get("HELPLINE_MEDIA_MAX_BYTES", str(20 * 1024 * 1024))),
        max_attempts=int(get("HELPLINE_CHANNEL_MAX_ATTEMPTS", "5")),
        retry_base_seconds=float(get("HELPLINE_CHANNEL_RETRY_SECONDS", "2")),
        env=helpline_env,
        simulator=simulator_enabled(helpline_env, get("HELPLINE_SIMULATOR")),
        trusted_proxies=trusted_proxies(
            get("HELPLINE_TRUSTED_PROXIES"), get("HELPLINE_TRUST_FORWARDED")
        ),
        webhook_max_bytes=int(get("HELPLINE_WEBHOOK_MAX_BYTES", str(WEBHOOK_MAX_BYTES))),
    )
