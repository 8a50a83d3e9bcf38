"""Conversation tests: `rasa test` on the stories in tests/conversations/, one file per language.

Each story is real user text (held-out rows, keypad numbers, the pack's command words) with the
intent it must get and the actions the dialogue must take: menu, rights answers for two
countries, a full complaint, case status, emergency, hand-off, erasure, language switch. A wrong
intent or a wrong action fails the test, with Rasa's own report of the failed stories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_conversation_stories_in_every_language(model, tmp_path):
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "test", "core", "--model", str(model),
         "--stories", str(ROOT / "tests" / "conversations"), "--out", str(out),
         "--endpoints", str(tmp_path / "none.yml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    failed = (out / "failed_test_stories.yml").read_text(encoding="utf-8")
    report = json.loads((out / "story_report.json").read_text())
    assert len(list((ROOT / "tests" / "conversations").glob("test_*.yml"))) == 8  # a file a pack
    assert "- story:" not in failed, failed
    assert report["accuracy"] == 1.0, report
