"""What the actions use: the case store, catalogues, rights answers, contacts and the notifier.

Created lazily on first use (nothing connects at import time) and shared by every action of the
action server. Tests replace them with ``use(Services(...))``.
"""

from __future__ import annotations

import functools
import threading

from bot import locale_packs
from bot import settings as settings_module
from bot.emergency import Notifier, load_contacts, load_crisis_lines, notifier_from_settings
from bot.i18n import Translations
from bot.rights import RightsAnswers
from bot.store import repository

# Sender ids our channels (issue 4) produce are already HMACs of channel and address.
_HEX64 = frozenset("0123456789abcdef")


class Services:
    def __init__(
        self,
        settings=None,
        *,
        database=None,
        locales_dir=None,
        notifier: Notifier | None = None,
        contacts_file=None,
        crisis_lines_file=None,
        handoff_hours: int = 24,
    ) -> None:
        self._settings = settings
        self._database = database
        self._locales_dir = locales_dir or locale_packs.DEFAULT_LOCALES_DIR
        self._notifier = notifier
        self._contacts_file = contacts_file
        self._crisis_lines_file = crisis_lines_file
        self.handoff_hours = handoff_hours
        self._lock = threading.Lock()

    @functools.cached_property
    def settings(self):
        return self._settings or settings_module.load()

    @property
    def database(self):
        with self._lock:
            if self._database is None:
                from bot.store import open_database

                self._database = open_database(self.settings)
            return self._database

    @functools.cached_property
    def translations(self) -> Translations:
        return Translations(self._locales_dir)

    @functools.cached_property
    def rights(self) -> RightsAnswers:
        return RightsAnswers(self._locales_dir)

    @functools.cached_property
    def packs(self) -> list[locale_packs.LocalePack]:
        return locale_packs.discover(self._locales_dir)

    @functools.cached_property
    def contacts(self):
        return load_contacts(self._contacts_file or self.settings.emergency_contacts or None)

    @functools.cached_property
    def crisis_lines(self):
        return load_crisis_lines(self._crisis_lines_file or self.settings.crisis_lines or None)

    @functools.cached_property
    def notifier(self) -> Notifier:
        return self._notifier or notifier_from_settings(self.settings)

    def pseudonym(self, channel: str, sender_id: str) -> str:
        """The contact's key: our channels already send an HMAC; anything else (the REST
        channel, the shell) is hashed here so that no raw id reaches the case store."""
        if len(sender_id) == 64 and set(sender_id) <= _HEX64:
            return sender_id
        return repository.pseudonym(self.settings.pseudonym_key, channel, sender_id)


_services: Services | None = None


def get() -> Services:
    global _services
    if _services is None:
        _services = Services()
    return _services


def use(services: Services | None) -> None:
    """Replace the shared services (tests)."""
    global _services
    _services = services
