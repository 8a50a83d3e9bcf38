"""Settings refuse missing secrets outside development; operators' case commands."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bot import settings
from bot.store import Database
from bot.store import repository as repo
from bot.store.crypto import generate_key

ROOT = Path(__file__).resolve().parent.parent
PSEUDONYM_KEY = secrets.token_urlsafe(32)


def test_production_refuses_a_missing_key():
    with pytest.raises(settings.SettingsError, match="HELPLINE_ENCRYPTION_KEY is not set"):
        settings.load({"HELPLINE_ENV": "production"})


@pytest.mark.parametrize("value", ["changeme", "secret", " "])
def test_production_refuses_placeholders(value):
    env = {
        "HELPLINE_ENV": "production",
        "HELPLINE_ENCRYPTION_KEY": value,
        "HELPLINE_PSEUDONYM_KEY": "x" * 32,
    }
    with pytest.raises(settings.SettingsError, match="HELPLINE_ENCRYPTION_KEY"):
        settings.load(env)


def test_production_refuses_a_malformed_key():
    env = {
        "HELPLINE_ENV": "production",
        "HELPLINE_ENCRYPTION_KEY": "not-a-fernet-key",
        "HELPLINE_PSEUDONYM_KEY": "x" * 32,
    }
    with pytest.raises(settings.SettingsError, match="not a valid key"):
        settings.load(env)


def test_no_environment_means_production():
    with pytest.raises(settings.SettingsError, match="HELPLINE_ENCRYPTION_KEY is not set"):
        settings.load({})


def test_development_works_without_setup(caplog):
    settings._warned.clear()  # the warning is said once per process
    s = settings.load({"HELPLINE_ENV": "development"})
    assert s.development and s.encryption_keys and s.pseudonym_key
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("helpline.db")
    assert "development key" in caplog.text
    assert s.encryption_keys[0] not in caplog.text


def test_unknown_environment():
    with pytest.raises(settings.SettingsError, match="HELPLINE_ENV"):
        settings.load({"HELPLINE_ENV": "prod"})


def run_cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, **env},
    )


def test_cases_list_and_show(tmp_path):
    key = generate_key()
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    db = Database(url, [key])
    db.upgrade()
    with db.session() as s:
        contact = repo.upsert_contact(
            s, pseudonym="p1", channel="telegram", address="12345678", language="ne", country="QA"
        )
        case, _ = repo.create_case(
            s, contact=contact, category="wages", urgency="high", what_happened="no salary 4 months"
        )
        repo.add_message(s, contact=contact, direction="in", text="talab aayena", case=case)
    db.dispose()
    env = {
        "HELPLINE_ENV": "production",
        "HELPLINE_DATABASE_URL": url,
        "HELPLINE_ENCRYPTION_KEY": key,
        "HELPLINE_PSEUDONYM_KEY": PSEUDONYM_KEY,
    }

    listed = run_cli("cases", "list", "--format", "json", "--language", "ne", env=env)
    assert listed.returncode == 0, listed.stderr.decode()
    rows = json.loads(listed.stdout)
    assert [(r["reference"], r["category"], r["urgency"]) for r in rows] == [
        (case.reference, "wages", "high")
    ]
    assert b"no salary" not in listed.stdout  # lists carry no personal data

    table = run_cli("cases", "list", env=env)
    assert case.reference.encode() in table.stdout and b"reference" in table.stdout

    shown = run_cli("cases", "show", case.reference.lower(), "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr.decode()
    detail = json.loads(shown.stdout)
    assert detail["intake"]["what_happened"] == "no salary 4 months"
    assert detail["transcript"][0]["text"] == "talab aayena"
    assert [e["kind"] for e in detail["events"]][:1] == ["created"]

    missing = run_cli("cases", "show", "HX-000000", env=env)
    assert missing.returncode == 2 and b"no case" in missing.stderr

    replied = run_cli("cases", "reply", case.reference, "We spoke to your agent.", env=env)
    assert replied.returncode == 0, replied.stderr.decode()
    assert b"queued on telegram" in replied.stdout
    empty = run_cli("cases", "reply", case.reference, " ", env=env)
    assert empty.returncode == 2 and b"needs some text" in empty.stderr

    db = Database(url, [key])
    with db.session() as s:  # showing a case is audited, and so is a reply
        found = repo.find_case(s, reference=case.reference)
        assert [e.kind for e in found.events] == ["created", "viewed", "reply"]
        reply = found.messages[-1]
        assert (reply.direction, reply.status, reply.text) == (
            "out",
            "queued",
            "We spoke to your agent.",
        )  # for the running helpline's queue to send (tests/test_inbox.py)
        assert reply.author.startswith("operator:")
    db.dispose()


def _model_name(locales):
    from bot import cli, locale_packs

    packs = locale_packs.discover(locales)
    return cli.training_inputs(
        packs, locales, ROOT / "config.yml", ROOT / "domain.yml", ROOT / "nlu" / "data"
    )[2]


def test_model_name_follows_training_inputs_but_not_translations(tmp_path):
    import shutil

    locales = tmp_path / "locales"
    shutil.copytree(ROOT / "locales", locales)
    name = _model_name(locales)
    assert name == _model_name(locales)

    po = locales / "bn" / "LC_MESSAGES" / "messages.po"
    po.write_text(po.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert _model_name(locales) == name  # a translation edit never retrains

    pack = locales / "bn" / "pack.yml"
    pack.write_text(pack.read_text(encoding="utf-8").replace("MY: [", "MY: [malaysia2, "))
    changed = _model_name(locales)
    assert changed != name  # a new country name retrains

    intents = locales / "ne" / "nlu" / "intents.yml"
    intents.write_text(intents.read_text(encoding="utf-8") + "\n    - namaste hajur aama\n")
    assert _model_name(locales) != changed


@pytest.mark.parametrize(
    "credential",
    [
        {"TELEGRAM_BOT_TOKEN": "123456:real-looking-token"},
        {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "a-real-auth-token"},
    ],
)
def test_development_keys_are_refused_with_a_real_provider(credential):
    with pytest.raises(settings.SettingsError, match="development keys protect nothing"):
        settings.load({"HELPLINE_ENV": "development", **credential})
    # The same credential against a fake server on loopback (the tests) is development.
    fake = {"TELEGRAM_API_BASE": "http://127.0.0.1:9", "TWILIO_API_BASE": "http://127.0.0.1:9"}
    assert settings.load({"HELPLINE_ENV": "development", **credential, **fake}).development


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HELPLINE_SIMULATOR", "maybe", "HELPLINE_SIMULATOR: 'maybe' is not a yes/no value"),
        ("HELPLINE_SMS_SEGMENT_BUDGET", "four", "HELPLINE_SMS_SEGMENT_BUDGET"),
        ("HELPLINE_TRUSTED_PROXIES", "10.0.0.0/8,not-an-address", "HELPLINE_TRUSTED_PROXIES"),
    ],
)
def test_an_unusable_value_names_its_variable(variable, value, message):
    with pytest.raises(settings.SettingsError, match=message):
        settings.load({"HELPLINE_ENV": "development", variable: value})


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_one_way_to_read_a_boolean(value):
    keys = {"HELPLINE_ENCRYPTION_KEY": generate_key(), "HELPLINE_PSEUDONYM_KEY": PSEUDONYM_KEY}
    on = settings.load({"HELPLINE_ENV": "production", **keys, "HELPLINE_SIMULATOR": value})
    assert on.simulator_on


def test_public_surface_is_loopback_development_only():
    from bot.cli import UNSAFE_CHANNELS, public_surface

    dev = settings.load({"HELPLINE_ENV": "development"})
    prod = settings.load({"HELPLINE_ENV": "production", "HELPLINE_ENCRYPTION_KEY": generate_key(),
                          "HELPLINE_PSEUDONYM_KEY": PSEUDONYM_KEY})  # fmt: skip
    assert public_surface(dev, "127.0.0.1") == (True, [])
    assert public_surface(dev, "0.0.0.0") == (False, list(UNSAFE_CHANNELS))
    assert public_surface(prod, "127.0.0.1") == (False, list(UNSAFE_CHANNELS))


def test_processes_refuse_a_schema_that_is_not_current_and_replicas_never_race(tmp_path):
    """Only `helpline db upgrade` (and `helpline run` once) migrate; on PostgreSQL two
    processes upgrading at once are serialised by an advisory lock."""
    import concurrent.futures

    from sqlalchemy import create_engine, text

    from bot.store import open_database

    env = {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    with pytest.raises(settings.SettingsError, match="helpline db upgrade"):
        open_database(settings.load(env))
    open_database(settings.load(env), upgrade=True).dispose()
    open_database(settings.load(env)).dispose()  # current now: accepted

    admin = create_engine("postgresql://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
    name = f"race_{os.getpid()}"
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        key = generate_key()

        def upgrade(_):
            db = Database(url, [key])
            try:
                db.upgrade()
                return db.revisions()
            finally:
                db.dispose()

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(upgrade, range(3)))
        assert len(set(results)) == 1 and results[0][0] == results[0][1]
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.parametrize(
    ("variable", "weak", "environment"),
    [
        ("HELPLINE_PSEUDONYM_KEY", "p" * 40, {}),
        ("HELPLINE_PSEUDONYM_KEY", "short-key", {}),
        ("TELEGRAM_WEBHOOK_SECRET", "s3cret", {}),
        ("TELEGRAM_WEBHOOK_SECRET", "a secret with spaces and enough length", {}),
    ],
)
def test_weak_secrets_are_refused_in_production(variable, weak, environment):
    env = {"HELPLINE_ENV": "production", "HELPLINE_ENCRYPTION_KEY": generate_key(),
           "HELPLINE_PSEUDONYM_KEY": PSEUDONYM_KEY, variable: weak, **environment}  # fmt: skip
    with pytest.raises(settings.SettingsError, match=variable) as refused:
        settings.load(env)
    assert weak not in str(refused.value)  # the message never quotes the secret
    env[variable] = secrets.token_urlsafe(32)
    assert settings.load(env).production


def test_keygen_makes_keys_and_tokens_that_pass_the_checks():
    key = run_cli("keygen", env={}).stdout.decode().strip()
    token = run_cli("keygen", "--token", env={}).stdout.decode().strip()
    loaded = settings.load({"HELPLINE_ENV": "production", "HELPLINE_ENCRYPTION_KEY": key,
                            "HELPLINE_PSEUDONYM_KEY": token, "TELEGRAM_WEBHOOK_SECRET": token})
    assert loaded.encryption_keys == (key,) and loaded.telegram_secret == token
