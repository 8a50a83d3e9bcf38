"""End to end through Rasa's REST channel, in every language: a worker asks a rights question,
files a complaint, checks it, and the case is in the store with the right category, language and
transcript. Then emergency, hand-off and erasure. Real model, real action server, real SQLite.

The workers' messages are rows of the held-out set (tests/data/heldout), never trained on.
"""

from __future__ import annotations

import csv
import re
import uuid

import pytest

from actions import messages as m
from bot import settings as settings_module
from bot.i18n import Translations
from bot.rights import RightsAnswers
from bot.store import Database
from bot.store import repository as repo
from bot.store.models import Message
from tests.conftest import ROOT
from tests.live_server import call

pytestmark = pytest.mark.slow
T = Translations()
RIGHTS = RightsAnswers()
LANGUAGES = ["en", "bn", "ne", "my", "vi", "id", "ms", "th"]


def heldout(language: str, intent: str, n: int = 0) -> str:
    with open(ROOT / "tests" / "data" / "heldout" / f"{language}.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r[0] == intent and r[1] == "native"]
    return rows[n][2]


def skip_word(language: str) -> str:
    from bot import locale_packs

    pack = next(p for p in locale_packs.discover() if p.code == language)
    return pack.meta["keywords"]["skip"][0]


@pytest.fixture(scope="module")
def store(live):
    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": live.database_url}
    )
    db = Database(settings.database_url, settings.encryption_keys)
    yield db
    db.dispose()


@pytest.mark.parametrize("language", LANGUAGES)
def test_question_complaint_and_status(live, store, language):
    worker = f"e2e-{language}-{uuid.uuid4().hex[:6]}"
    # A documents question the danger detector does not flag (some are: "employer keeps my
    # passport and won't give it back" scores as trafficking in Nepali; that flow is tested below)
    question = next(
        q for q in (heldout(language, "documents", n) for n in range(5))
        if not call(f"{live.base}/model/parse", {"text": q}).get("danger_kind")
    )  # fmt: skip
    replies = live.say(worker, question)
    spoken = live.tracker(worker)["slots"]["language"]
    assert spoken == language or (language == "ms" and spoken == "id")

    # Asked once for the country; "3" is Hong Kong.
    assert replies[0].startswith(T.text(spoken, m.ASK_COUNTRY)), replies
    replies = live.say(worker, "3")
    assert replies == [
        RIGHTS.answer(spoken, "documents", "HK").text,
        T.text(spoken, m.ANSWER_OFFER),
    ]

    # "1": report this problem.
    replies = live.say(worker, "1")
    assert replies == [T.text(spoken, m.INTAKE_PRIVACY), T.text(spoken, m.ASK_WHAT_HAPPENED)]
    # Likewise a complaint the detector does not flag (a flagged one gets the danger reply first)
    what = next(
        q for q in (heldout(language, "documents", n) for n in range(1, 8))
        if q != question and not call(f"{live.base}/model/parse", {"text": q}).get("danger_kind")
    )  # fmt: skip
    answers = [what, "Kowloon", skip_word(language), skip_word(language), "2025", "4"]
    for answer in answers:
        replies = live.say(worker, answer)
    assert replies == [T.text(spoken, m.ASK_FEES_PAID)]
    replies = live.say(worker, "HKD 3000")
    assert replies == [T.text(spoken, m.ASK_MAY_IDENTIFY)]
    for answer in ["2", "1", "2", "2"]:
        replies = live.say(worker, answer)
    assert replies == [T.text(spoken, m.ASK_SAFE_CONTACT)]
    replies = live.say(worker, "Sunday")
    assert len(replies) == 2 and replies[1] == T.text(spoken, m.CASE_NEXT)
    reference = re.search(r"HX-\d{6}", replies[0]).group()
    assert T.text(spoken, m.CASE_FILED, case_ref=reference, secret="0000")[:12] == replies[0][:12]

    with store.session() as s:
        case = repo.find_case(s, reference=reference)
        assert (case.category, case.language, case.country, case.channel) == (
            "documents", spoken, "HK", "rest",
        )  # fmt: skip
        assert (case.what_happened, case.city, case.who, case.workers_affected) == (
            what, "Kowloon", None, 4,
        )  # fmt: skip
        assert (case.may_identify, case.consent_ngo, case.consent_authorities) == (
            False,
            True,
            False,
        )
        assert "retention_of_documents" in case.ilo_indicators
        transcript = [(msg.direction, msg.text) for msg in case.messages]
        assert transcript[0] == ("in", question)
        # the worker got the secret; the transcript keeps it masked
        masked = T.text(spoken, m.CASE_FILED, case_ref=reference, secret=repo.SECRET_MASK)
        assert ("in", what) in transcript and ("out", masked) in transcript

    # Checking the case in the worker's language, by reference (same phone: no secret needed).
    replies = live.say(worker, reference)
    assert replies[0] == T.text(spoken, m.STATUS_NEW, case_ref=reference)


def test_emergency_handoff_and_erasure(live, store):
    worker = f"e2e-safety-{uuid.uuid4().hex[:6]}"
    live.say(worker, "I work in Singapore")
    replies = live.say(worker, "they locked us in the dormitory and beat my friend, please help")
    kind_replies = {T.text("en", text) for text in [m.EMERGENCY, *m.EMERGENCY_BY_KIND.values()]}
    assert replies[0] in kind_replies, replies
    assert "6438 5122 Ministry of Manpower" in replies[1]
    reference = re.search(r"HX-\d{6}", replies[2]).group()
    # "are you safe right now?" last, except when the worker writes about someone else
    assert replies[3:] in ([T.text("en", m.ASK_SAFE_NOW)], [])
    with store.session() as s:
        case = repo.find_case(s, reference=reference)
        assert (case.urgency, case.handoff, case.country) == ("immediate", True, "SG")
        assert case.danger_kind in ("confinement", "violence", "third_party")

    # In danger and handed off: never silence; the caseworker sees the message.
    assert live.say(worker, "what about my salary") == [T.text("en", m.HOLDING)]
    with store.session() as s:
        case = repo.find_case(s, reference=reference)
        assert "what about my salary" in [msg.text for msg in case.messages]
        repo.release_handoff(s, case=case, actor="caseworker")  # a person clears it

    # The worker: the classifier says fees, the danger detector says suicide.
    suicidal = f"e2e-suicide-{uuid.uuid4().hex[:6]}"
    live.say(suicidal, "I work in Hong Kong")
    replies = live.say(
        suicidal,
        "I dont want to live anymore. 5 month no pay, family angry, loan people calling."
        " tonight i finish everything",
    )
    assert replies[0] == T.text("en", m.EMERGENCY_SUICIDE)
    assert "2896 0000 The Samaritans" in replies[1]
    assert replies[-1] == T.text("en", m.ASK_SAFE_NOW)
    assert live.say(suicidal, "1") == [T.text("en", m.SAFE_NOW)]  # a false alarm: goes on

    assert live.say(worker, "delete my data") == [T.text("en", m.ERASE_CONFIRM)]
    assert live.say(worker, "1") == [T.text("en", m.ERASE_DONE), T.text("en", m.ERASE_NOT_REACHED)]
    with store.session() as s:
        case = repo.find_case(s, reference=reference)
        assert case.contact is None and case.urgency == "immediate"
        assert s.query(Message).filter(Message.case_id == case.id).count() == 0
    events = live.tracker(worker)["events"]
    assert not [e for e in events if e.get("event") == "user"]  # Rasa's copy is gone too


def test_language_switch_and_low_confidence(live):
    worker = f"e2e-lang-{uuid.uuid4().hex[:6]}"
    live.say(worker, heldout("en", "wages"))
    replies = live.say(worker, "help")
    assert replies == [T.text("en", m.MENU)]
    replies = live.say(worker, "5")
    assert replies[0].startswith(T.text("en", m.CHOOSE_LANGUAGE)) and "বাংলা" in replies[0]
    bengali = 1 + [line.split(" ", 1)[1] for line in replies[0].splitlines()[1:]].index("বাংলা")
    replies = live.say(worker, str(bengali))
    assert replies == [T.text("bn", m.LANGUAGE_SET), T.text("bn", m.MENU_HINT)]
    parsed = call(f"{live.base}/model/parse", {"text": "asdf"})
    assert parsed["intent"]["name"] == "nlu_fallback"  # below the threshold in config.yml
    replies = live.say(worker, "asdf")  # nothing to understand: ask, never guess
    assert replies == [T.text("bn", m.NOT_UNDERSTOOD), T.text("bn", m.MENU)]
