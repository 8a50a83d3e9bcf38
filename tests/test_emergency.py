"""Caseworker alerts: the log line (the webhook: tests/test_alerts.py)."""

from __future__ import annotations

import json
import logging

from bot.emergency import LogNotifier

EVENT = {"reason": "emergency", "case_ref": "HX-123456", "urgency": "immediate"}


def test_log_notifier_writes_one_line_without_personal_data(caplog):
    with caplog.at_level(logging.WARNING):
        LogNotifier().alert(EVENT)
    assert caplog.records[-1].getMessage() == "ALERT " + json.dumps(EVENT, sort_keys=True)
