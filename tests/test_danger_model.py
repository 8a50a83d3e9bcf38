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

# The targets are recall >= 0.95 in every language and for suicide, and false alarms
# <= 0.10 in every language. The recall targets are met (README "Danger detection",
# docs/benchmarks.md), so the gate holds them: a later change to the packs or the pipeline that
# loses recall below the target fails here. False alarms are met in 7 of 8 languages: the
# ceilings hold what was reached with a margin of a few messages (a retrained model's scores
# differ in the last digits). Lower them as it improves.
TARGET_RECALL = 0.95
# measured 2026-12-05: bn 1.00, en 1.00, id 0.98, ms 0.98, my 0.98, ne 1.00, th 0.98, vi 1.00
SUICIDE_RECALL_FLOOR = 0.95  # measured 0.99 (118 of 119)
# measured 0.00-0.11 by language (Burmese 8 of 76, Vietnamese 3 of 40); target 0.10
FALSE_ALARM_CEILING = 0.15
FALSE_ALARM_CEILING_ALL = 0.07  # measured 0.046 (16 of 346)


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
        if summary[f"lang:{code}"]["recall"] < TARGET_RECALL
    }
    assert not low, f"recall below {TARGET_RECALL}: {low} ({_figures(summary)})"


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
    overall = summary["all"]["false_alarms"]
    assert overall <= FALSE_ALARM_CEILING_ALL, f"false alarms {overall:.3f} ({_figures(summary)})"


def test_better_than_the_previous_release_by_far(summary):
    """The previous release's rule recalled 0.42 of this set (docs/benchmarks.md); 0.99 now."""
    assert summary["all"]["recall"] >= 0.95, _figures(summary)
