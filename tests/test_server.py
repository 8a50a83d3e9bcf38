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


def test_message_text_is_not_logged_at_info(live):
    base, log = live.base, live.log
    call(f"{base}/webhooks/rest/webhook", {"sender": "log-test", "message": "madam hits me daily"})
    time.sleep(1)
    assert "madam hits me daily" not in log.read_text(errors="replace")
