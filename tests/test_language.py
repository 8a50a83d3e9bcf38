"""The conversation's language is sticky: "ok" never flips it (bot.language, actions.language).

The slot is kept by our actions themselves (actions.dialogue.Turn): tested through one of them,
with a real SQLite case store."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import services as services_module
from actions.actions import ActionRoute
from bot.language import sticky_language


@pytest.mark.parametrize(
    "current, detected, confidence, text, requested, expected",
    [
        (None, "bn", 1.0, "আমার বেতন", None, "bn"),  # first clear message sets it
        (None, "en", 0.3, "ok", None, None),  # not clear enough to choose
        ("bn", "en", 0.7, "ok", None, "bn"),  # "ok" never flips it
        ("bn", "en", 0.99, "yes", None, "bn"),  # even a confident one-word reply
        ("vi", "id", 0.95, "gaji saya belum dibayar", None, "id"),  # unmistakably another
        ("vi", "id", 0.6, "gaji saya belum dibayar", None, "vi"),  # not sure enough
        ("bn", "en", 0.8, "english please", "en", "en"),  # asked for
        ("ne", None, 0.0, "", None, "ne"),
        # Telegram's "/start" (every chat's first message) never sets or changes the language
        (None, "en", 0.99, "/start", None, None),
        ("th", "en", 0.99, "/start", None, "th"),
        (None, "en", 0.99, "/help@HelplineBot", None, None),
        # another language's own script switches, even without spaces between words
        ("en", "th", 1.0, "นายจ้างไม่จ่ายเงินเดือน", None, "th"),
        ("en", "my", 1.0, "လစာမပေးဘူး", None, "my"),
        ("en", "bn", 1.0, "বেতন পাইনি", None, "bn"),
        ("bn", "ne", 1.0, "तलब पाइन", None, "ne"),
        ("en", "th", 1.0, "ค่ะ", None, "en"),  # too short to be sure (3 letters)
        ("th", "en", 0.99, "salary", None, "th"),  # Latin script still needs a few words
    ],
)
def test_sticky_language(current, detected, confidence, text, requested, expected):
    assert sticky_language(current, detected, confidence, text, requested) == expected


def tracker(slot, text, intent, language, confidence, entities=()):
    return Tracker(
        sender_id="test",
        slots={"language": slot},
        latest_message={
            "text": text,
            "intent": {"name": intent, "confidence": 0.9},
            "entities": list(entities),
            "language": language,
            "language_confidence": confidence,
        },
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


@pytest.fixture(autouse=True)
def services(tmp_path):
    from bot import settings as settings_module
    from bot.store import Database

    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp_path}/l.db"}
    )
    db = Database(settings.database_url, settings.encryption_keys)
    db.upgrade()
    services_module.use(services_module.Services(settings, database=db))
    yield
    services_module.use(None)
    db.dispose()


def run(t):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionRoute().run(dispatcher, t, {}))
    return [e for e in events if e.get("name") in ("language", "country")]


def test_action_sets_the_language_from_the_first_clear_message():
    assert run(tracker(None, "মালিক বেতন দেয় না", "wages", "bn", 1.0)) == [SlotSet("language", "bn")]


def test_action_keeps_the_language_on_ok():
    assert run(tracker("bn", "ok", "affirm", "en", 0.76)) == []


def test_action_switches_when_asked():
    entities = [{"entity": "language", "value": "ne", "start": 0, "end": 6}]
    assert run(tracker("bn", "nepali please", "choose_language", "en", 0.9, entities)) == [
        SlotSet("language", "ne")
    ]


def test_destination_country_but_never_the_country_of_origin():
    nepal = [{"entity": "country", "value": "NP", "start": 0, "end": 5}]
    assert run(tracker("en", "I am from Nepal", "greet", "en", 0.9, nepal)) == []
    qatar = [{"entity": "country", "value": "QA", "start": 0, "end": 5}]
    assert run(tracker("en", "I work in Qatar", "greet", "en", 0.9, qatar)) == [
        SlotSet("country", "QA")
    ]
