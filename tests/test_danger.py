"""Danger detection (nlu/danger.py) and the dialogue's answer to danger (actions/dialogue.py).

The lexicon and classifier tests train tiny detectors from hand-written packs in a temporary
folder (seconds); the dialogue tests run the real actions against a real SQLite case store with
parse results as the NLU writes them. The recall gate on the evaluation set, with the real model,
is in tests/test_danger_model.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from rasa_sdk.events import SlotSet

from actions import actions as a
from actions import messages as m
from actions.form import ValidateGrievanceForm
from bot import locale_packs
from bot.store import repository as repo
from nlu import danger
from nlu.danger_eval import DANGER_SETS, load_danger_set
from tests.test_actions import T, run, tracker

# --- the lexicon ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lexicon() -> danger.Lexicon:
    return danger.Lexicon(
        {
            "suicide": [
                "want to die",
                "kill* myself",
                "sorry .. mother",
                "মরে যাব",
                "อยากตาย",
                "သေချင်",
            ],  # fmt: skip
            "violence": ["hit me"],
            "weak": ["tired of everything"],
            "not_danger": ["this job is killing me", "kill myself laughing"],
            "not_now": ["now i am safe"],
        }
    )


@pytest.mark.parametrize(
    "text, kind",
    [
        ("I WANT to die!!", "suicide"),  # case and punctuation
        ("i am killing myself slowly", "suicide"),  # `*`: any ending
        ("sorry my dear mother", "suicide"),  # `..`: words between
        ("আমি মরে যাবো", "suicide"),  # Bengali: any ending
        ("ฉันอยากตายแล้ว", "suicide"),  # Thai: anywhere, no spaces
        ("ငါသေချင်တယ်", "suicide"),  # Burmese: anywhere, no spaces
        ("boss hit me again", "violence"),
    ],
)
def test_lexicon_phrases_match_as_workers_write_them(lexicon, text, kind):
    matches, _ = lexicon.danger_matches(text)
    assert [m.kind for m in matches] == [kind]


@pytest.mark.parametrize(
    "text",
    ["this job is killing me", "they hit meat", "i want to dieting", "i kill myself laughing"],
)
def test_lexicon_needs_whole_words_and_not_danger_phrases_shield(lexicon, text):
    assert lexicon.danger_matches(text) == ([], False)


def test_weak_phrases_are_not_danger_alone(lexicon):
    assert lexicon.danger_matches("so tired of everything") == ([], True)


def test_danger_that_is_over_is_only_a_weak_signal(lexicon):
    assert lexicon.danger_matches("last year boss hit me, now i am safe") == ([], True)
    assert lexicon.danger_matches("now i am safe")[0] == []


def test_vietnamese_phrases_match_with_and_without_accents():
    lex = danger.Lexicon({"suicide": ["muốn chết"]})
    assert lex.danger_matches("tôi muốn chết")[0] and lex.danger_matches("toi muon chet")[0]


def _alternation_matches(phrases: dict[str, list[str]], texts: list[str]) -> list[list]:
    """The lexicon as it was: one alternation a kind (longest pattern first), overlapped."""
    import regex

    patterns = {}
    for kind, items in phrases.items():
        unique = dict.fromkeys(p for p in map(danger._phrase_pattern, sorted(set(items))) if p)
        alts = sorted(unique, key=len, reverse=True)  # ties in the phrases' order
        patterns[kind] = regex.compile("|".join(f"(?:{a})" for a in alts))
    out = []
    for text in texts:
        norm = danger.normalize_for_matching(text)
        found = []
        for kind, pattern in patterns.items():
            for hit in pattern.finditer(norm, overlapped=True):
                found.append((kind, hit.group(), hit.start(), hit.end()))
        out.append(found)
    return out


def test_the_word_check_finds_what_trying_every_phrase_everywhere_finds():
    """Every pack's phrases, on a twentieth of every pack's labelled messages and on phrases that
    overlap (two phrases at one position: the first in the alternation's order wins)."""
    phrases: dict[str, list[str]] = {}
    texts = [
        "i want to die, sorry mother, i will kill myself tonight",
        "this job is killing me but boss hit me and hit me again",
        "ฉันอยากตายแล้ว อยากตาย",
    ]
    for pack in locale_packs.discover():
        lex = danger.load_pack_lexicon(pack.path)
        for kind in danger.KINDS:
            phrases.setdefault(kind, []).extend(lex.kinds[kind])
        for kind in ("weak", "not_danger", "not_now"):
            phrases.setdefault(kind, []).extend(getattr(lex, kind))
        rows = [t for kind in danger.KINDS for t in lex.danger_rows.get(kind, [])] + lex.safe_rows
        texts += rows[::20]
    phrases["suicide"] += ["want to", "want to die", "kill* myself", "kill"]
    fast = danger.Lexicon(phrases)
    expected = _alternation_matches(phrases, texts)
    got = [[(x.kind, x.phrase, x.start, x.end) for x in fast.matches(t)] for t in texts]
    assert sum(map(bool, expected)) > 100  # the comparison is about phrases that match
    assert got == expected


# --- every pack's lexicon ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [p.code for p in locale_packs.discover()])
def test_every_pack_has_a_complete_danger_lexicon(code):
    pack = locale_packs.load(locale_packs.DEFAULT_LOCALES_DIR / code)
    assert danger.check_pack_lexicon(pack.path) == []


def test_locales_check_reports_a_broken_or_thin_lexicon(tmp_path):
    (tmp_path / "danger.yml").write_text("kinds: {suicid: [x]}\n", encoding="utf-8")
    assert "unknown danger kind 'suicid'" in danger.check_pack_lexicon(tmp_path)[0]
    (tmp_path / "danger.yml").write_text(
        yaml.safe_dump(
            {"kinds": {"suicide": ["want to die", "xy"]}, "not_danger": ["want to die"]}
        ),
        encoding="utf-8",
    )
    problems = "\n".join(danger.check_pack_lexicon(tmp_path))
    assert "kinds.suicide has 2 phrases, need 20" in problems
    assert "'xy' is too short to be safe" in problems
    assert "'want to die' is both danger and not_danger" in problems
    assert "examples.safe has 0 messages" in problems
    (tmp_path / "danger.yml").unlink()
    assert danger.check_pack_lexicon(tmp_path) == [
        "danger.yml: missing (every pack needs a danger lexicon)"
    ]


# --- the classifier, trained tiny ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> danger.DangerDetector:
    lex = danger.PackLexicon(
        code="en",
        kinds={k: [] for k in danger.KINDS} | {"suicide": ["want to die"], "fire": ["fire in"]},
        weak=["no point"],
        not_danger=["killing me"],
        not_now=["now safe"],
        danger_examples={k: [] for k in danger.KINDS}
        | {
            "suicide": [
                "i will end my life tonight",
                "goodbye forever sorry mother",
                "no reason to live any more",
                "i took many pills",
            ],
            "fire": ["the dorm is burning smoke everywhere", "fire in the factory now"],
        },  # fmt: skip
        safe_examples=[
            "this job is killing me haha",
            "last year he hit me, now ok",
            "i miss my mother so much",
        ],  # fmt: skip
    )
    others = [("what is my salary", "wages"), ("passport with boss", "documents"),
              ("hello", "greet"), ("they lock us inside help", "emergency")]  # fmt: skip
    return danger.DangerDetector.train([lex], others * 3)


def test_classifier_scores_and_names_the_kind(tiny):
    found = tiny.assess("i want to end my life tonight, sorry mother")
    assert found.danger and found.kind == "suicide"
    assert tiny.assess("i want to die").source == "lexicon"
    assert not tiny.assess("what is my salary").danger
    assert tiny.assess("").score == 0.0 and not tiny.assess("   ").danger


def test_huge_and_hostile_text_is_assessed_without_error(tiny):
    assert tiny.assess("x" * 1_000_000).score >= 0.0
    assert tiny.assess("\x00\ufffd<script>alert(1)</script>").score >= 0.0


def test_what_is_learnt_is_stored_as_json_and_gives_the_same_answers(tiny, tmp_path):
    path = tmp_path / "danger.json"
    tiny.save(path)
    json.loads(path.read_text(encoding="utf-8"))  # JSON, not a pickle
    loaded = danger.DangerDetector.load(path)
    for text in ("i want to end my life tonight", "fire in the factory", "what is my salary"):
        assert loaded.assess(text).kind == tiny.assess(text).kind
        assert abs(loaded.assess(text).score - tiny.assess(text).score) < 1e-3


def test_sure_ngrams_are_not_lowered_by_the_encoder(tiny):
    """The n-grams NGRAMS_ENOUGH sure decide alone; below that the encoder's opinion counts
    (here a real network, on the real encoder's embedding, that is sure of no danger)."""
    import copy

    import numpy as np

    from nlu.embedding import DIM

    det = copy.copy(tiny)
    zeros = np.zeros((DIM, 1), dtype=np.float32)
    det.encoder = danger.EncoderNetworks(
        [(zeros, np.zeros(1, np.float32), np.zeros(1, np.float32), -30.0)]
    )
    text = "i will end my life tonight"
    sure = danger.NGRAMS_ENOUGH + 0.05
    assert det._combine(sure, text, 0.5) == sure
    assert det._combine(danger.NGRAMS_ENOUGH - 0.05, text, 0.5) < 1e-6
    p, _ = det._ngrams(text, "en")
    assert p >= danger.NGRAMS_ENOUGH  # the tiny detector learnt this one
    assert det.probability(text, "en")[0] == p and det.assess(text, "en").danger


@pytest.mark.parametrize("pronoun", ["saya", "sy", "aku", "Aku", "aq", "gw", "gue"])
def test_malay_and_indonesian_i_is_one_word_for_the_lexicon(pronoun):
    lex = danger.Lexicon({"confinement": ["kurung sy"], "violence": ["pukul aku"]})
    assert [m.kind for m in lex.danger_matches(f"majikan kurung {pronoun} dalam rumah")[0]] == [
        "confinement"
    ]
    assert [m.kind for m in lex.danger_matches(f"dia pukul {pronoun}")[0]] == ["violence"]
    assert lex.danger_matches("majikan kurung anjing")[0] == []
    assert danger.normalize_for_matching("Gue. AKU, saya!") == "sy sy sy"


def test_the_encoder_networks_training_flushes_subnormal_values_and_nothing_else():
    """Weights and Adam moments below danger.FLUSH_BELOW become zero after each step (subnormal
    numbers made the training over 5 times slower on an Intel CPU); larger ones get Adam's
    update exactly; scikit-learn's own optimizer is back after the block."""
    import numpy as np
    from sklearn.neural_network import _multilayer_perceptron as mlp
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    start = np.array([1e-250, -1e-250, 0.5, -0.25, 1e-150, 0.0])
    grads = [np.array([0.0, 0.0, 0.1, -0.2, 0.0, 1e-120])]  # the last one squared is tiny
    with danger._flushing_adam():
        assert mlp.AdamOptimizer is not AdamOptimizer
        flushing = mlp.AdamOptimizer([start.copy()], 1e-3, 0.9, 0.999, 1e-8)
    assert mlp.AdamOptimizer is AdamOptimizer
    plain = AdamOptimizer([start.copy()], 1e-3, 0.9, 0.999, 1e-8)
    flushed, unflushed = [start.copy()], [start.copy()]
    for _ in range(3):
        flushing.update_params(flushed, grads)
        plain.update_params(unflushed, grads)
    big = np.abs(unflushed[0]) >= danger.FLUSH_BELOW
    assert big.tolist() == [False, False, True, True, True, True]
    assert np.array_equal(flushed[0][big], unflushed[0][big])
    assert not flushed[0][~big].any() and unflushed[0][:2].any()
    for moments in (flushing.ms, flushing.vs):
        assert not (np.abs(moments[0][moments[0] != 0]) < danger.FLUSH_BELOW).any()
    assert np.abs(plain.vs[0][-1]) < danger.FLUSH_BELOW and plain.vs[0][-1] != 0


ROWS = """# label, kind, variant, form, text
danger\tsuicide\tnative\tindirect\tzorblat quenna vestry tonight
danger\tfire\tnative\tdirect\tsmoke in the dorm now cannot get out
safe\tpast\tnative\t-\tlast year fire in old dorm, now new place ok
"""


def test_labelled_messages_are_read_with_the_pack_and_learnt(tmp_path):
    """``danger_examples.tsv`` rows are read with the pack and learnt: a message like a danger
    row scores higher than without it."""
    (tmp_path / "danger_examples.tsv").write_text(ROWS, encoding="utf-8")
    rows = danger._rows_of(tmp_path / "danger_examples.tsv")
    assert rows["danger_rows"]["suicide"] == ["zorblat quenna vestry tonight"]
    assert rows["safe_rows"] == ["last year fire in old dorm, now new place ok"]
    base = danger.PackLexicon(
        "en", {k: [] for k in danger.KINDS} | {"fire": ["fire in"]}, [], [], [],
        {k: [] for k in danger.KINDS}
        | {"fire": ["the dorm is burning"], "suicide": ["i will end my life"]},
        ["this job is killing me", "i miss home"],
    )  # fmt: skip
    others = [("what is my salary", "wages"), ("hello", "greet")] * 3
    without = danger.DangerDetector.train([base], others)
    with_rows = danger.DangerDetector.train([dataclasses.replace(base, **rows)], others)
    text = "zorblat quenna vestry"
    assert with_rows.probability(text)[0] > without.probability(text)[0] + 0.1


@pytest.mark.parametrize(
    "line, problem",
    [
        ("danger\tsuicid\tnative\tdirect\tx", "unknown danger kind 'suicid'"),
        ("safe\tpast\tnative\tdirect\tx", "unknown safe kind 'past' (or form not '-')"),
        ("maybe\tpast\tnative\t-\tx", "label must be danger or safe"),
        ("danger\tsuicide\tdirect\tbye", "expected label, kind, variant, form and text"),
    ],
)
def test_a_broken_labelled_messages_file_is_reported_with_its_line(tmp_path, line, problem):
    pack = locale_packs.DEFAULT_LOCALES_DIR / "en"
    (tmp_path / "danger.yml").write_bytes((pack / "danger.yml").read_bytes())
    (tmp_path / "danger_examples.tsv").write_text(ROWS + line + "\n", encoding="utf-8")
    (found,) = danger.check_pack_lexicon(tmp_path)
    assert found.startswith(f"{tmp_path / 'danger_examples.tsv'}:5: {problem}")


def test_every_packs_labelled_messages_are_balanced_and_cover_every_kind():
    for pack in locale_packs.discover():
        rows = danger.load_rows(pack.path / danger.ROWS_FILE)
        dangers = [r for r in rows if r["label"] == "danger"]
        assert len(dangers) >= 50 and len(rows) - len(dangers) >= 50, pack.code
        assert {r["kind"] for r in dangers} == set(danger.KINDS), pack.code


# --- the evaluation sets: format and coverage (counts only: the eval rows stay unread) ----------


@pytest.mark.parametrize("name", sorted(DANGER_SETS))
def test_danger_sets_cover_every_language_kind_and_form(name):
    rows = [r for r in load_danger_set(DANGER_SETS[name]) if r["variant"] != "zawgyi"]
    codes = {p.code for p in locale_packs.discover()}
    assert {r["language"] for r in rows} == codes
    need = 30 if name == "eval" else 20
    for code in codes:
        mine = [r for r in rows if r["language"] == code]
        dangers = [r for r in mine if r["label"] == "danger"]
        assert len(dangers) >= need and len(mine) - len(dangers) >= need * 2 // 3, code
        assert {r["kind"] for r in dangers} == set(danger.KINDS), code
        suicide = [r for r in dangers if r["kind"] == "suicide"]
        assert len(suicide) * 4 >= len(dangers) * 0.9, code  # about a quarter
        assert sum(r["form"] == "indirect" for r in suicide) * 2 >= len(suicide) * 0.9, code
        subtle = sum(r["form"] in ("subtle", "indirect") for r in dangers)
        assert subtle * 3 >= len(dangers) * 0.9, code


def test_no_lexicon_or_pack_trains_on_a_danger_evaluation_message():
    from nlu.gazetteer import fold

    training = set()
    for pack in locale_packs.discover():
        lex = danger.load_pack_lexicon(pack.path)
        texts_of = [*lex.danger_examples.values(), lex.safe_examples, *lex.danger_rows.values()]
        for texts in [*texts_of, lex.safe_rows]:
            training |= {fold(t).strip() for t in texts}
        training |= {fold(e.text).strip() for e in locale_packs.read_examples(pack.nlu_files)}
    for name in DANGER_SETS:
        rows = load_danger_set(DANGER_SETS[name])
        copied = sum(1 for r in rows if fold(r["text"]).strip() in training)
        assert copied == 0, f"{copied} {name} messages are also training examples"


# --- the dialogue --------------------------------------------------------------------------------


def parse(kind: str | None = None, weak: bool = False, score: float | None = None) -> dict:
    return {
        "danger": score if score is not None else (0.97 if kind else 0.1),
        "danger_kind": kind,
        "danger_weak": weak,
    }


def test_suicide_gets_its_own_reply_with_the_configured_crisis_lines(services):
    events, said = run(
        a.ActionRightsAnswer(),
        tracker("5 month no pay, loan people calling. tonight i finish everything", "fees",
                confidence=0.995, slots={"country": "SG"}, **parse("suicide")),
    )  # fmt: skip
    assert said[0] == T.text("en", m.EMERGENCY_SUICIDE)
    assert said[1].splitlines() == [
        T.text("en", m.CRISIS_LINES),
        "1767 Samaritans of Singapore (24 h)",
        "9151 1767 Samaritans of Singapore CareText, WhatsApp (24 h)",
    ]
    assert said[2].startswith("Your case number is HX-")
    assert said[-1] == T.text("en", m.ASK_SAFE_NOW)
    assert not any("police" in s.lower() for s in said)  # no "call the police" first
    reference = next(e["value"] for e in events if e["name"] == "case_ref")
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        assert (case.urgency, case.handoff, case.danger_kind) == ("immediate", True, "suicide")
    alert = services.notifier.alerts[-1]
    assert alert["danger_kind"] == "suicide" and alert["urgency"] == "immediate"
    assert "finish" not in json.dumps(alert)  # never the worker's words


def test_suicide_in_a_country_without_a_verified_line_invents_no_number(services):
    _, said = run(
        a.ActionRightsAnswer(),
        tracker("i want to die", "wages", slots={"country": "MY"}, **parse("suicide")),
    )
    assert said[1] == T.text("en", m.CRISIS_NO_LINE)
    assert not any(ch.isdigit() for s in said[:2] for ch in s)


@pytest.mark.parametrize(
    "kind, message",
    [("fire", m.EMERGENCY_FIRE), ("medical", m.EMERGENCY_MEDICAL),
     ("confinement", m.EMERGENCY_CONFINEMENT), ("third_party", m.EMERGENCY_THIRD_PARTY)],
)  # fmt: skip
def test_other_kinds_get_guidance_worded_for_the_kind(services, kind, message):
    _, said = run(a.ActionRoute(), tracker("...", "out_of_scope", **parse(kind)))
    assert said[0] == T.text("en", message)
    assert (said[-1] == T.text("en", m.ASK_SAFE_NOW)) == (kind != "third_party")


def test_danger_is_assessed_after_a_menu_number_in_the_form_and_in_a_handoff(services):
    # after the menu: a sentence is read for danger before it is read as an answer
    menu = {"awaiting": "menu"}
    beaten = tracker("they beat me", "abuse", slots=menu, **parse("violence"))
    _, said = run(a.ActionRoute(), beaten)
    assert said[0] == T.text("en", m.EMERGENCY_VIOLENCE)
    # a bare number is never danger, whatever the score
    number = tracker("1", "help", choice="1", sender="w2", slots=menu, **parse("violence"))
    _, said = run(a.ActionRoute(), number)
    assert T.text("en", m.EMERGENCY_VIOLENCE) not in said
    # inside the grievance form
    form = ValidateGrievanceForm()
    t = tracker("no food 3 days", "living_conditions", sender="w3", **parse("deprivation"))
    t.active_loop = {"name": "grievance_form"}
    from rasa_sdk.executor import CollectingDispatcher

    dispatcher = CollectingDispatcher()
    import asyncio

    slots = asyncio.run(form.validate_answer("intake_city", dispatcher, t))
    assert dispatcher.messages[0]["text"] == T.text("en", m.EMERGENCY_DEPRIVATION)
    assert slots["intake_case"] and slots["intake_city"] == "no food 3 days"
    # during a plain hand-off (the bot is silent otherwise)
    events, _ = run(a.ActionHandoff(), tracker("real person", "human_handoff", sender="w4"))
    _, said = run(a.ActionRightsAnswer(), tracker("passport?", "documents", sender="w4"))
    assert said == []
    _, said = run(a.ActionRightsAnswer(), tracker("fire fire", "safety", sender="w4",
                                                  **parse("fire")))  # fmt: skip
    assert said[0] == T.text("en", m.EMERGENCY_FIRE)


def test_two_weak_signals_in_a_row_are_danger_one_is_not(services):
    events, said = run(a.ActionRoute(), tracker("whats the point", "out_of_scope",
                                                **parse(weak=True, score=0.3)))  # fmt: skip
    assert T.text("en", m.EMERGENCY_SUICIDE) not in said
    assert SlotSet("danger_signal", True) in events
    _, said = run(a.ActionRoute(), tracker("goodbye everyone", "goodbye",
                                           slots={"danger_signal": True},
                                           **parse(weak=True, score=0.3)))  # fmt: skip
    assert said[0] == T.text("en", m.EMERGENCY_SUICIDE)
    # a weak signal after an ordinary message is not danger, and forgets nothing wrongly
    events, said = run(a.ActionRoute(), tracker("bye", "goodbye", sender="w2",
                                                slots={"danger_signal": None}))  # fmt: skip
    assert said == [T.text("en", m.GOODBYE)] and events == [SlotSet("awaiting", None)]


def test_a_worker_in_danger_is_never_met_with_silence_and_can_say_they_are_safe(services):
    hk = {"country": "HK"}
    first = tracker("i will end it tonight", "out_of_scope", slots=hk, **parse("suicide"))
    events, said = run(a.ActionRoute(), first)
    reference = next(e["value"] for e in events if e["name"] == "case_ref")
    # a follow-up before any person answered: a short holding message, not silence
    _, said = run(a.ActionRightsAnswer(), tracker("my salary", "wages", slots={"country": "HK"}))
    assert said == [T.text("en", m.HOLDING_SUICIDE)]
    # asking for the line again
    _, said = run(a.ActionRoute(), tracker("3", "help", choice="3", slots={"country": "HK"}))
    assert said[0].splitlines()[1] == "2896 0000 The Samaritans, many languages (24 h)"
    # still flagged: a weak signal alone is danger now
    _, said = run(a.ActionRoute(), tracker("nobody cares", "out_of_scope", slots={"country": "HK"},
                                           **parse(weak=True, score=0.3)))  # fmt: skip
    assert said[-1] == T.text("en", m.HOLDING_SUICIDE)
    # a false alarm: "1", I am safe: the conversation goes on, the case stays flagged
    safe = {"awaiting": "safe"}
    events, said = run(a.ActionRoute(), tracker("1", "help", choice="1", slots=safe))
    assert said == [T.text("en", m.SAFE_NOW)]
    _, said = run(a.ActionGreet(), tracker("hello", "greet"))
    assert said[0] == T.text("en", m.GREETING)
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        assert (case.urgency, case.handoff, case.danger_kind) == ("immediate", False, "suicide")
        assert [e.kind for e in case.events][-1] == "worker_says_safe"
        repo.release_handoff(s, case=case, actor="caseworker")  # a person clears the flag
        assert case.danger_kind is None
    _, said = run(a.ActionRoute(), tracker("nobody cares", "out_of_scope",
                                           **parse(weak=True, score=0.3)))  # fmt: skip
    assert T.text("en", m.EMERGENCY_SUICIDE) not in said
    assert services.notifier.alerts[-1]["reason"] == "worker_says_safe"


def test_danger_after_stop_still_opens_an_immediate_case_and_alerts(services):
    """STOP holds replies (bot/channels/inbox.py), never the assessment: the case and the alert."""
    with services.database.session() as s:
        contact = repo.upsert_contact(
            s, pseudonym=services.pseudonym("sms", "worker-stop"), channel="sms", language="en"
        )
        contact.opted_out = True
    events, _ = run(a.ActionRoute(), tracker("he is hitting me now", "abuse", sender="worker-stop",
                                             channel="sms", **parse("violence")))  # fmt: skip
    reference = next(e["value"] for e in events if e["name"] == "case_ref")
    with services.database.session() as s:
        case = repo.find_case(s, reference=reference)
        assert (case.urgency, case.danger_kind, case.contact.opted_out) == (
            "immediate", "violence", True,
        )  # fmt: skip
    assert services.notifier.alerts[-1]["danger_kind"] == "violence"


def test_the_topic_classifiers_emergency_alone_is_not_danger(services):
    """ "So sleepy I could die" is `emergency` at 0.63 to the intent classifier; the danger
    detector gives it 0.09: no alarm, an ordinary answer. Even sure (0.85), the classifier's
    emergency does not count when the detector has spoken (measured: it found 1 danger message
    in 1,400 and raised 34 false alarms); it counts only with a model that has no detector."""
    sleepy = tracker("so sleepy i could die", "emergency", confidence=0.63, **parse(score=0.09))
    _, said = run(a.ActionEmergency(), sleepy)
    assert said == [T.text("en", m.NOT_UNDERSTOOD), T.text("en", m.MENU)]
    sure = tracker("lock inside", "emergency", sender="w2", confidence=0.85, **parse(score=0.05))
    assert run(a.ActionEmergency(), sure)[1][0] != T.text("en", m.EMERGENCY)
    old_model = tracker("lock inside", "emergency", sender="w3", confidence=0.6)
    assert "danger" not in old_model.latest_message
    assert run(a.ActionEmergency(), old_model)[1][0] == T.text("en", m.EMERGENCY)


def test_a_false_alarm_on_a_rights_question_still_gets_its_answer(services):
    """ "Boss keeps my passport, won't give it back" can read as trafficking: the worker gets the
    danger reply, says "1" (safe), and then the answer to what they asked."""
    hk = {"country": "HK"}
    question = tracker("boss keeps my passport, wont give back", "documents", slots=hk,
                       **parse("trafficking"))  # fmt: skip
    events, said = run(a.ActionRightsAnswer(), question)
    assert said[0] == T.text("en", m.EMERGENCY_TRAFFICKING)
    assert SlotSet("danger_topic", "documents") in events
    safe = tracker("1", "help", choice="1", slots={**hk, "danger_topic": "documents"})
    events, said = run(a.ActionRoute(), safe)
    assert said[0] == T.text("en", m.SAFE_NOW)
    assert said[1] == services.rights.answer("en", "documents", "HK").text
    assert SlotSet("danger_topic", None) in events


def test_after_words_of_suicide_safe_is_not_followed_by_a_rights_answer(services):
    first = tracker("5 month no pay, tonight i finish everything", "fees",
                    slots={"country": "HK"}, **parse("suicide"))  # fmt: skip
    events, _ = run(a.ActionRightsAnswer(), first)
    assert not [e for e in events if e.get("name") == "danger_topic"]
    _, said = run(a.ActionRoute(), tracker("1", "help", choice="1", slots={"country": "HK"}))
    assert said == [T.text("en", m.SAFE_NOW)]


def test_latin_ngrams_are_weighed_per_language_too(tmp_path):
    """Latin letters are shared by many packs' languages (romanized Bengali and Nepali,
    Vietnamese without accents, Malay): a message in them also has its n-grams in its
    language's block, so the same words can be danger in one language and safe in another;
    other scripts, and a message of no known language, use the shared weights alone."""
    none = {k: [] for k in danger.KINDS}
    said = ["zorblat quenna tonight", "zorblat quenna now", "zorblat quenna again"]
    xa = danger.PackLexicon("xa", none, [], [], [], none | {"suicide": said}, ["hello friend"])
    xb = danger.PackLexicon("xb", none, [], [], [], none | {"fire": ["smoke in room"]}, said)
    others = [("what is my salary", "wages", "xa"), ("hello", "greet", "xb")] * 3
    det = danger.DangerDetector.train([xa, xb], others, embed=False)
    assert sorted(det.block_coef) == ["xa", "xb"]
    text = "zorblat quenna later"
    in_xa, in_xb = det.probability(text, "xa")[0], det.probability(text, "xb")[0]
    assert in_xa > det.probability(text)[0] > in_xb and in_xa - in_xb > 0.2
    assert danger.latin_block("ঘুম আসে না zorblat", "xa") is None  # not only Latin letters
    assert danger.latin_block("Việt có dấu", "vi") == "vi"  # accents are Latin letters
    assert danger.latin_block("saya mau pulang", "ms") == danger.latin_block("x", "id")
    path = tmp_path / "danger.json"
    det.save(path)
    loaded = danger.DangerDetector.load(path)
    assert abs(loaded.probability(text, "xa")[0] - in_xa) < 1e-3
    assert abs(loaded.probability(text, "xb")[0] - in_xb) < 1e-3
