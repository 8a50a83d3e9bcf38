"""Emergency contacts by country, from configuration (never invented), and caseworker alerts.

Contacts: ``bot/data/emergency_contacts.yml`` or the file ``HELPLINE_EMERGENCY_CONTACTS`` names.
Crisis lines for suicide and self-harm: ``bot/data/crisis_lines.yml`` or ``HELPLINE_CRISIS_LINES``.
Alerts: a ``Notifier`` tells caseworkers that a case needs a person now. ``LogNotifier`` writes
one log line (reference, urgency, category, language, country: never what the worker wrote or
who they are); ``WebhookNotifier`` also POSTs that JSON to ``HELPLINE_NOTIFY_WEBHOOK``, signed
with HMAC-SHA256 of the body in ``X-Helpline-Signature`` when ``HELPLINE_NOTIFY_SECRET`` is set.
The dashboard (a later issue) reads the same cases from the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import urllib.request
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

DEFAULT_CONTACTS_FILE = Path(__file__).resolve().parent / "data" / "emergency_contacts.yml"
DEFAULT_CRISIS_LINES_FILE = Path(__file__).resolve().parent / "data" / "crisis_lines.yml"


@dataclasses.dataclass(frozen=True)
class Contact:
    name: str
    number: str
    source: str


class ContactsError(ValueError):
    """An emergency contacts file that cannot be used."""


def load_crisis_lines(path: Path | str | None = None) -> dict[str, list[Contact]]:
    """Suicide and self-harm crisis lines: ``bot/data/crisis_lines.yml`` or the file
    ``HELPLINE_CRISIS_LINES`` names; the same format as the emergency contacts."""
    return load_contacts(
        path or os.environ.get("HELPLINE_CRISIS_LINES") or DEFAULT_CRISIS_LINES_FILE
    )


def load_contacts(path: Path | str | None = None) -> dict[str, list[Contact]]:
    path = Path(path or os.environ.get("HELPLINE_EMERGENCY_CONTACTS") or DEFAULT_CONTACTS_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContactsError(f"emergency contacts file {path}: {exc}") from exc
    contacts: dict[str, list[Contact]] = {}
    for country, entries in data.items():
        if not isinstance(country, str) or len(country) != 2:
            raise ContactsError(f"{path}: {country!r} is not an ISO country code")
        for entry in entries or []:
            missing = [k for k in ("name", "number", "source") if not entry.get(k)]
            if missing:
                raise ContactsError(f"{path}: {country} entry lacks {', '.join(missing)}")
            contacts.setdefault(country.upper(), []).append(
                Contact(str(entry["name"]), str(entry["number"]), str(entry["source"]))
            )
    return contacts


class Notifier:
    """Tells caseworkers a case needs attention now. ``alert`` must never raise."""

    def alert(self, event: dict) -> None:
        raise NotImplementedError


class LogNotifier(Notifier):
    def alert(self, event: dict) -> None:
        logger.warning("ALERT %s", json.dumps(event, sort_keys=True))


class WebhookNotifier(LogNotifier):
    def __init__(self, url: str, secret: str | None = None, timeout: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def alert(self, event: dict) -> None:
        super().alert(event)
        body = json.dumps(event, sort_keys=True).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        if self.secret:
            signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            request.add_header("X-Helpline-Signature", f"sha256={signature}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except OSError as exc:  # the log line above is still there for the caseworkers
            logger.error("alert webhook failed (%s); the alert is in the log", type(exc).__name__)


def notifier_from_env(environ=None) -> Notifier:
    environ = os.environ if environ is None else environ
    url = (environ.get("HELPLINE_NOTIFY_WEBHOOK") or "").strip()
    if url:
        return WebhookNotifier(url, (environ.get("HELPLINE_NOTIFY_SECRET") or "").strip() or None)
    return LogNotifier()
