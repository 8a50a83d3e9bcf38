"""Train the real model once and parse in every language, as `helpline parse` and the server do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot import cli

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def parser(model):
    return cli.Parser(model)


# One clear message per language for a few intents, written for this test.
EXAMPLES = [
    ("my boss not pay salary 3 month", "en", "wages"),
    ("agent keep my passport", "en", "documents"),
    ("আমার পাসপোর্ট মালিক রেখে দিছে", "bn", "documents"),
    ("amar beton 3 mash dei nai", "bn", "wages"),
    ("मेरो तलब तीन महिनादेखि आएको छैन", "ne", "wages"),
    ("sahu le passport rakhyo", "ne", "documents"),
    ("အလုပ်ရှင်က ပတ်စပို့ သိမ်းထားတယ်", "my", "documents"),
    ("công ty giữ hộ chiếu của tôi", "vi", "documents"),
    ("cong ty chua tra luong 2 thang", "vi", "wages"),
    ("gaji sy blm dibayar 3 bulan", "id", "wages"),
    ("นายจ้างยึดพาสปอร์ตผมไว้", "th", "documents"),
    ("เงินเดือนไม่ออกมาสองเดือนแล้ว", "th", "wages"),
]


@pytest.mark.parametrize("text, language, intent", EXAMPLES)
def test_parse_in_every_language(parser, text, language, intent):
    result = parser.parse(text)
    assert (result["language"], result["intent"]) == (language, intent), result


def test_zawgyi_is_understood_like_unicode(parser):
    unicode = parser.parse("အလုပ်ရှင်က လစာ မပေးဘူး")
    zawgyi = parser.parse("အလုပ္ရွင္က လစာ မေပးဘူး")
    assert zawgyi["normalized_text"] == unicode["text"]
    assert zawgyi["language"] == "my"
    assert zawgyi["intent"] == unicode["intent"]


def test_entities_in_native_script_and_digits(parser):
    result = parser.parse("HX-৪৮২১ কেসের কী খবর")
    assert {"entity": "case_ref", "value": "HX-4821"}.items() <= result["entities"][0].items()
    result = parser.parse("saya kerja di malaysia, agen ambil 20 juta")
    assert [(e["entity"], e["value"]) for e in result["entities"]] == [("country", "MY")]


def test_danger_is_in_the_parse_result_whatever_the_topic(parser):
    """The issue's worker: the intent classifier says fees (a topic), the danger detector says
    suicide. A figure of speech is not danger."""
    result = parser.parse(
        "I dont want to live anymore. 5 month no pay, family angry, loan people calling."
        " tonight i finish everything"
    )
    assert result["danger_kind"] == "suicide" and result["danger"] >= 0.5, result
    calm = parser.parse("this job is killing me haha, so much overtime")
    assert calm["danger_kind"] is None and calm["danger"] < 0.5, calm


def test_train_skips_when_nothing_changed(model):
    assert cli.train(models_dir=model.parent) == model


def test_helpline_parse_command(model, tmp_path):
    lines = [
        b"boss keep my passport",
        b"",
        "আমার বেতন দেয় নাই".encode(),
        b"\xff\xfe invalid utf-8 \xc3",
        ("x" * 100_000).encode(),
        b"<script>alert(1)</script>'; DROP TABLE cases;--",
        b"\x00\x07 control \x1b[31m",
        "😭😭😭".encode(),
        "\u200b \x07".encode(),  # nothing to read: no word, so no intent (it used to raise)
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "parse", "--model", str(model)],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == len(lines)
    keys = {
        "text",
        "normalized_text",
        "language",
        "language_confidence",
        "intent",
        "confidence",
        "danger",
        "danger_kind",
        "entities",
    }
    assert all(set(o) == keys for o in out)
    assert out[0]["intent"] == "documents" and out[0]["language"] == "en"
    assert out[1]["intent"] is None  # an empty line stays a line
    assert out[2]["language"] == "bn"
    assert "\ufffd" in out[3]["text"]  # invalid bytes replaced, not fatal
    assert all(o["intent"] for i, o in enumerate(out) if i not in (1, 8))
    assert out[8]["intent"] is None and out[8]["danger_kind"] is None


def test_parse_without_a_model_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--models-dir", str(tmp_path), "parse"],
        input=b"hi\n",
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2
    assert b"no model found" in proc.stderr and b"helpline train" in proc.stderr


def test_a_model_outside_the_models_folder_is_never_loaded(model, tmp_path):
    """A model archive runs its components' code when loaded: only the models folder counts."""
    elsewhere = tmp_path / model.name
    elsewhere.write_bytes(model.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "parse", "--model", str(elsewhere)],
        input=b"hi\n",
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"not in the models folder" in proc.stderr


def test_rasa_data_validate():
    files = [str(f) for f in sorted((ROOT / "locales").glob("*/nlu/*.yml"))]
    files += [str(f) for f in sorted((ROOT / "nlu" / "data").glob("*.yml"))]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rasa",
            "data",
            "validate",
            "--domain",
            "domain.yml",
            "--config",
            "config.yml",
            "--data",
            *files,
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=600,
    )
    output = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, output[-3000:]
    # Warnings that intents are unused in stories are expected until the dialogue exists;
    # conflicting labels and invalid entity annotations are not.
    for problem in (
        "labeled with multiple different intents",
        "Misaligned entity annotation",
        "is not defined in the domain",
    ):
        assert problem not in output, output[-3000:]


KHMER_PACK = {
    "pack.yml": "code: km\nname: ខ្មែរ\nenglish_name: Khmer\ncountries:\n  TH: [ថៃ]\n"
    "languages:\n  km: [ខ្មែរ]\n",
    "nlu/intents.yml": """version: "3.1"
nlu:
- intent: greet
  examples: |
    - សួស្តី
    - ជំរាបសួរ
    - សួស្តីបង
- intent: wages
  examples: |
    - ខ្ញុំមិនទាន់បានប្រាក់ខែទេ
    - ថៅកែមិនឲ្យប្រាក់ខែ
    - ប្រាក់ខែតិចពេក
- intent: documents
  examples: |
    - ថៅកែយកលិខិតឆ្លងដែនខ្ញុំ
    - លិខិតឆ្លងដែនខ្ញុំនៅឯភ្នាក់ងារ
    - គេមិនឲ្យលិខិតឆ្លងដែនមកវិញ
""",
}


def test_a_new_language_is_a_new_folder(tmp_path):
    """A tiny Khmer pack, added as a folder, is trained on and identified: no code changes.
    Beside the English pack only (all eight would double the suite's training time): English
    shares no script with Khmer, so this is the same test of discovery as with all of them."""
    locales = tmp_path / "locales"
    shutil.copytree(ROOT / "locales" / "en", locales / "en")
    for name, text in KHMER_PACK.items():
        (locales / "km" / name).parent.mkdir(parents=True, exist_ok=True)
        (locales / "km" / name).write_text(text, encoding="utf-8")
    model = cli.train(locales_dir=locales, models_dir=tmp_path / "models")
    parser = cli.Parser(model)
    result = parser.parse("ថៅកែមិនទាន់ឲ្យប្រាក់ខែខ្ញុំទេ")
    assert result["language"] == "km"
    assert result["intent"] == "wages"
    assert parser.parse("ខ្ញុំធ្វើការនៅថៃ")["entities"][0]["value"] == "TH"


# What the model must keep reaching on the held-out set and on the blind set (neither ever
# trained on). The product targets are intent macro-F1 >= 0.85 and language identification >=
# 0.95 in every language; where a floor here is lower, that language does not reach the target
# yet (Malay: see docs/benchmarks.md). The blind set gives pass or fail here, never its rows.
F1_FLOOR = 0.85
LANGUAGE_FLOORS = {
    "en": 0.95,
    "bn": 0.95,
    "ne": 0.95,
    "my": 0.95,
    "vi": 0.95,
    "th": 0.95,
    "id": 0.95,
    "ms": 0.80,
}


@pytest.fixture(scope="session")
def agent(model):
    """The model loaded once for both sets' scores."""
    from rasa.core.agent import Agent

    return Agent.load(str(model))


@pytest.fixture(scope="session")
def heldout_scores(model, agent):
    from nlu.evaluation import evaluate, load_heldout

    return evaluate(model, load_heldout(), agent=agent, batched=True)


@pytest.fixture(scope="session")
def blind_scores(model, agent):
    from nlu.evaluation import BLIND_DIR, evaluate, load_heldout

    return evaluate(model, load_heldout(BLIND_DIR), agent=agent, batched=True)


def test_scoring_in_batches_gives_what_one_message_at_a_time_gives(agent):
    """The sets are scored in batches (``parse_many``); the product parses one message at a
    time. Every tenth held-out message (Zawgyi copies among them), and hostile ones, both ways."""
    import asyncio

    from nlu.evaluation import load_heldout, parse_many

    texts = [row["text"] for row in load_heldout()[::10]]
    texts += ["", "   ", "\x00\x07", "x" * 20_000, "😭😭😭", "/greet", "HX-৪৮২১ কেসের কী খবর"]
    loop = asyncio.new_event_loop()
    one = [loop.run_until_complete(agent.parse_message(text)) for text in texts]
    many = parse_many(agent, texts, batch=64)

    def key(r):
        return (
            r["intent"]["name"],
            round(r["intent"]["confidence"], 6),
            [(i["name"], round(i["confidence"], 6)) for i in r.get("intent_ranking") or []][:3],
            r.get("language"),
            r.get("danger"),
            r.get("danger_kind"),
            [(e["entity"], e["value"], e["start"]) for e in r["entities"]],
        )

    differ = sum(key(a) != key(b) for a, b in zip(one, many, strict=True))
    assert len(many) == len(texts) > 300
    assert differ == 0, f"{differ} of {len(texts)} messages parsed differently in batches"


@pytest.mark.parametrize("evaluation_set", ["heldout", "blind"])
@pytest.mark.parametrize("language", sorted(LANGUAGE_FLOORS))
def test_quality(request, evaluation_set, language):
    # only the figures, never a row: the assertion message shows n, f1 and lang_acc
    scores = request.getfixturevalue(f"{evaluation_set}_scores")[language]
    assert scores["f1"] >= F1_FLOOR, scores
    assert scores["lang_acc"] >= LANGUAGE_FLOORS[language], scores


def test_heldout_zawgyi_rows_are_understood(heldout_scores):
    assert heldout_scores["my/zawgyi"]["n"] >= 100
    assert heldout_scores["my/zawgyi"]["lang_acc"] >= 0.95
    assert heldout_scores["my/zawgyi"]["f1"] >= F1_FLOOR
