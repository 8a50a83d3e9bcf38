"""The recall gate: the real model and the real dialogue on the danger evaluation set.

Each message of ``tests/data/danger/eval`` is sent as a new worker's first message through the
Rasa agent and our actions (nlu/danger_eval.py); detected means an ``immediate`` case was opened.
Only aggregate figures are asserted and printed: the set's rows stay unread, so that nobody
tunes to them (a change to the packs that loses recall fails here, without saying which row).
"""

from __future__ import annotations

import pytest

from bot.locale_packs import discover
from nlu.danger_eval import DANGER_SETS, load_danger_set, run, summarize

pytestmark = pytest.mark.slow

# Floors: README "Danger detection" gives the measured figures these sit under.
RECALL_FLOOR = 0.95  # every language, danger messages
SUICIDE_RECALL_FLOOR = 0.95  # suicide and self-harm, all languages
FALSE_ALARM_CEILING = 0.10  # every language, hard negatives


@pytest.fixture(scope="module")
def summary(model) -> dict:
    return summarize(run(model, load_danger_set(DANGER_SETS["eval"])))


def _figures(summary: dict) -> str:
    return ", ".join(
        f"{k[5:]} {v['recall']:.2f}/{v['false_alarms']:.2f}"
        for k, v in sorted(summary.items())
        if k.startswith("lang:")
    )


def test_recall_on_danger_in_every_language(summary):
    low = {
        code: summary[f"lang:{code}"]["recall"]
        for code in (p.code for p in discover())
        if summary[f"lang:{code}"]["recall"] < RECALL_FLOOR
    }
    assert not low, f"recall below {RECALL_FLOOR}: {low} (recall/false alarms: {_figures(summary)})"


def test_recall_on_suicide_and_self_harm(summary):
    recall = summary["kind:suicide"]["recall"]
    assert recall >= SUICIDE_RECALL_FLOOR, f"suicide recall {recall:.2f}"


def test_false_alarms_on_hard_negatives_in_every_language(summary):
    high = {
        code: summary[f"lang:{code}"]["false_alarms"]
        for code in (p.code for p in discover())
        if summary[f"lang:{code}"]["false_alarms"] > FALSE_ALARM_CEILING
    }
    assert not high, f"false alarms above {FALSE_ALARM_CEILING}: {high}"
