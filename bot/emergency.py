"""Emergency contacts by country, from configuration (never invented), and caseworker alerts.

Contacts: ``bot/data/emergency_contacts.yml`` or the file ``HELPLINE_EMERGENCY_CONTACTS`` names.
Crisis lines for suicide and self-harm: ``bot/data/crisis_lines.yml`` or ``HELPLINE_CRISIS_LINES``.
Alerts: a ``Notifier`` tells caseworkers that a case needs a person now. ``LogNotifier`` writes
one log line (reference, urgency, category, language, country: never what the worker wrote or
who they are); ``WebhookNotifier`` also POSTs that JSON to ``HELPLINE_NOTIFY_WEBHOOK``, from a
background thread so that no action or queue waits for a slow receiver. The body carries
``alert_id`` (the same on every retry: receivers drop duplicates) and ``sent_at`` (Unix seconds
of this attempt), and ``X-Helpline-Signature: sha256=<hex>`` is the HMAC-SHA256 of the whole body
with ``HELPLINE_NOTIFY_SECRET``. A receiver recomputes it over the raw body, compares in constant
time, and refuses an alert whose ``sent_at`` is more than 5 minutes away from its clock or whose
``alert_id`` it has already seen (a replay). In production the URL must be https and the secret
set. The dashboard reads the same cases from the store.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import queue
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
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
        path or DEFAULT_CRISIS_LINES_FILE
    )


def load_contacts(path: Path | str | None = None) -> dict[str, list[Contact]]:
    path = Path(path or DEFAULT_CONTACTS_FILE)
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
    """Tells caseworkers a case needs attention now. ``alert`` must never raise or block."""

    def alert(self, event: dict) -> None:
        raise NotImplementedError


class LogNotifier(Notifier):
    def alert(self, event: dict) -> None:
        logger.warning("ALERT %s", json.dumps(event, sort_keys=True))


class NotifierConfigError(ValueError):
    """An alert webhook that must not be used (the message says what to set)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: urllib would follow it with a GET and drop the alert."""

    def redirect_request(self, *args, **kwargs):
        return None


class WebhookNotifier(LogNotifier):
    """The log line at once, then the POST from one background thread with a bounded queue.
    Nothing is lost silently: a full queue, a failure after the retries, or alerts still
    waiting when the process exits are logged as errors (with the case reference only), and
    the ``ALERT`` line is in the log in every case."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout: float = 5.0,
        *,
        attempts: int = 3,
        retry_seconds: float = 2.0,
        queue_size: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.attempts = attempts
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=queue_size)
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closes_at_exit = False

    def alert(self, event: dict) -> None:
        super().alert(event)
        try:
            self._queue.put_nowait({**event, "alert_id": uuid.uuid4().hex})
        except queue.Full:
            logger.error(
                "alert webhook queue full (%d waiting): the %s alert of %s is in the log only",
                self._queue.qsize(), *_named(event),
            )  # fmt: skip
            return
        self._start()

    def close(self, timeout: float | None = None) -> None:
        """Waits (up to ``timeout``, by default the time one alert may take) for the queued
        alerts to be sent, logs an error for any still waiting, and stops the thread. Runs at
        exit."""
        if timeout is None:
            timeout = self.attempts * (self.timeout + self.retry_seconds * 2)
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks and time.monotonic() < deadline:
                self._queue.all_tasks_done.wait(deadline - time.monotonic())
            waiting = self._queue.unfinished_tasks
        if waiting:
            logger.error("%d alerts not sent to the webhook before exit: they are in the log",
                         waiting)  # fmt: skip
        with self._lock:
            if not waiting and self._worker is not None and self._worker.is_alive():
                self._queue.put(None)  # the thread ends; the next alert starts another
                self._worker = None

    def _start(self) -> None:
        """The sending thread, started at the first alert (and again after a fork)."""
        with self._lock:
            if not self._closes_at_exit:
                atexit.register(self.close)
                self._closes_at_exit = True
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._deliver(event)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _deliver(self, event: dict) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(event)
                return
            except (OSError, http.client.HTTPException) as exc:  # refused, HTTP errors, timeouts
                failure = type(exc).__name__
                if attempt < self.attempts:
                    time.sleep(self.retry_seconds * 2 ** (attempt - 1))
        logger.error("alert webhook failed %d times (%s): the %s alert of %s is in the log only",
                     self.attempts, failure, *_named(event))  # fmt: skip

    def _post(self, event: dict) -> None:
        body = json.dumps({**event, "sent_at": int(self.clock())}, sort_keys=True).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        if self.secret:
            signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            request.add_header("X-Helpline-Signature", f"sha256={signature}")
        with self._opener.open(request, timeout=self.timeout) as response:
            response.read()


def _named(event: dict) -> tuple[str, str]:
    """What an error about an alert may say of it: its reason and case reference."""
    return event.get("reason") or "unnamed", event.get("case_ref") or "no case"


def check_webhook_url(url: str, *, production: bool) -> None:
    """``NotifierConfigError`` unless alerts may go to ``url``: https, or in development
    http to this machine (a receiver on loopback)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and not production and _loopback(parts.hostname):
        return
    where = "in production" if production else "except to 127.0.0.1, ::1 or localhost"
    raise NotifierConfigError(
        f"HELPLINE_NOTIFY_WEBHOOK must be an https:// URL {where}: alerts name cases and"
        " their urgency, and must not cross a network in clear"
    )


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_notifier(url: str, secret: str, *, production: bool) -> None:
    """The start-up check of the alert webhook: ``NotifierConfigError`` says what to fix."""
    if not url:
        return
    check_webhook_url(url, production=production)
    if production and not secret:
        raise NotifierConfigError(
            "HELPLINE_NOTIFY_SECRET is not set: in production alerts are signed so that the"
            " receiver can refuse forged ones; generate one with `helpline keygen`"
        )


def notifier_from_settings(settings=None) -> Notifier:
    """The notifier of ``bot.settings`` (``HELPLINE_NOTIFY_WEBHOOK``, ``HELPLINE_NOTIFY_SECRET``;
    ``settings.load`` has already run ``check_notifier``)."""
    if settings is None:
        from bot.settings import load

        settings = load()
    check_notifier(settings.notify_webhook, settings.notify_secret, production=settings.production)
    if settings.notify_webhook:
        return WebhookNotifier(settings.notify_webhook, settings.notify_secret or None)
    return LogNotifier()
