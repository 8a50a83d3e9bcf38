"""`helpline run`: the Rasa server and the action server together, over real HTTP on loopback."""

from __future__ import annotations

import time

import pytest

from tests.live_server import call

pytestmark = pytest.mark.slow


def test_parse_over_http(live):
    base = live.base
    result = call(f"{base}/model/parse", {"text": "sahu le passport rakhyo"})
    assert result["intent"]["name"] == "documents"
    assert result["language"] == "ne"


def test_conversation_language_is_sticky(live):
    base = live.base
    sender = "sticky-test"
    call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": "আমার বেতন দেয় নাই"})
    tracker = call(f"{base}/conversations/{sender}/tracker")
    assert tracker["slots"]["language"] == "bn"
    call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": "ok"})
    assert call(f"{base}/conversations/{sender}/tracker")["slots"]["language"] == "bn"
    call(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": "English please"})
    assert call(f"{base}/conversations/{sender}/tracker")["slots"]["language"] == "en"


@pytest.mark.parametrize(
    ("text", "language"),
    [("นายจ้างไม่จ่ายเงินเดือน", "th"), ("ကျွန်တော့်အလုပ်ရှင်က လစာမပေးဘူး", "my"),
     ("বেতন পাইনি", "bn")],
)  # fmt: skip
def test_telegrams_start_does_not_make_the_conversation_english(live, text, language):
    """Telegram sends "/start" first in every chat: the worker's own message after it decides
    the language (Thai and Burmese sentences have no spaces: one "word")."""
    sender = f"start-{language}"
    live.say(sender, "/start")
    assert live.tracker(sender)["slots"]["language"] is None
    replies = live.say(sender, text)
    assert live.tracker(sender)["slots"]["language"] == language
    assert replies and not replies[0].isascii(), replies  # answered in the worker's script


def test_message_text_is_not_logged_at_info(live):
    base, log = live.base, live.log
    call(f"{base}/webhooks/rest/webhook", {"sender": "log-test", "message": "madam hits me daily"})
    time.sleep(1)
    assert "madam hits me daily" not in log.read_text(errors="replace")
