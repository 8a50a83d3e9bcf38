"""Channel settings, from the environment (see README, `.env.example`).

A channel whose credentials are missing is off: one log line says so, and its webhook answers
503. API base URLs are settings so that tests (and sandboxes) can point the real clients at fake
servers on loopback.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


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
    trust_forwarded: bool  # behind a proxy: rebuild the public URL from X-Forwarded-* headers
    sms_segment_budget: int
    media_max_bytes: int
    max_attempts: int
    retry_base_seconds: float
    env: str = "development"  # HELPLINE_ENV
    simulator: bool = False  # the local web simulator (bot/channels/simulator.py) is served

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
        trust_forwarded=get("HELPLINE_TRUST_FORWARDED").lower() in ("1", "true", "yes"),
        sms_segment_budget=int(get("HELPLINE_SMS_SEGMENT_BUDGET", "4")),
        media_max_bytes=int(get("HELPLINE_MEDIA_MAX_BYTES", str(20 * 1024 * 1024))),
        max_attempts=int(get("HELPLINE_CHANNEL_MAX_ATTEMPTS", "5")),
        retry_base_seconds=float(get("HELPLINE_CHANNEL_RETRY_SECONDS", "2")),
        env=helpline_env,
        simulator=simulator_enabled(helpline_env, get("HELPLINE_SIMULATOR")),
    )
