"""Seeds a case store with many realistic cases, for the dashboard's benchmark (and for trying
the dashboard on a full queue). Never against a store with real cases: it refuses a database
that already has cases unless told ``--append``.

    python tests/bench/seed_cases.py --database-url sqlite:////tmp/seed.db \
        --cases 100000 --messages 1000000

Cases are spread over three organisations (deploying, partner, other), every urgency, status,
language, country, category and channel, with consent given on most; each has a contact, its
share of messages (both directions, encrypted like real ones), and its search terms (keyed
hashes of invented employer and workplace names). Texts are encrypted once per distinct text and
the ciphertext reused across rows: the database holds exactly what the application writes,
at a fraction of the seeding time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.sql import column, table  # noqa: E402

from bot import settings as settings_module  # noqa: E402
from bot import taxonomy  # noqa: E402
from bot.store import Database, accounts  # noqa: E402
from bot.store import cases as service  # noqa: E402
from bot.store import repository as repo  # noqa: E402
from bot.store.models import Case, Organisation  # noqa: E402

ORGANISATIONS = ("Helpline", "Partner NGO", "Other NGO")
PASSWORD = "benchmark password 1"
EMPLOYERS = ["Golden Glove", "Sunrise Electronics", "Hoa Mai", "ACME Plantation",
             "Star Textile", "Ocean Seafood", "Lucky Construction", "Green Palm",
             "Delta Garments", "Apex Mining"]  # fmt: skip
PLACES = ["Klang", "Penang", "Johor Bahru", "Samut Sakhon", "Mae Sot", "Taichung", "Kowloon",
          "Jurong", "Doha", "Dubai"]  # fmt: skip
TEXTS = {
    "in": ["My salary is not paid for 3 months", "অফিস আমার পাসপোর্ট রেখে দিয়েছে",
           "ကျွန်တော့် လစာ မရသေးဘူး", "Công ty giữ hộ chiếu của tôi", "gaji saya belum dibayar",
           "मेरो तलब दिएको छैन", "นายจ้างไม่จ่ายเงินเดือน", "boss keeps my passport"],
    "out": ["We got your report. A caseworker is working on it.",
            "When is it safe for us to call you?", "Thank you. Reply 0 for the menu."],
}  # fmt: skip
BATCH = 5000


def _weighted(rng: random.Random, pairs: list[tuple[str, float]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def seed(database_url: str, n_cases: int, n_messages: int, *, append: bool = False, seed=7):
    rng = random.Random(seed)
    settings = settings_module.load({**os.environ, "HELPLINE_DATABASE_URL": database_url})
    db = Database(database_url, settings.encryption_keys, settings.pseudonym_key)
    db.upgrade()
    cipher = db.engine.dialect.helpline_cipher
    key = db.engine.dialect.helpline_search_key
    operator = service.Actor.operator("seed")
    with db.session() as session:
        existing = session.execute(select(func.count()).select_from(Case)).scalar_one()
        if existing and not append:
            raise SystemExit(f"{database_url} already has {existing} cases: --append to add more")
        names = set(session.execute(select(Organisation.name)).scalars())
        for name in ORGANISATIONS:
            if name not in names:
                accounts.add_organisation(session, name, actor=operator)
        for email, org, role in (("sup@helpline.org", "Helpline", "supervisor"),
                                 ("ana@partner.org", "Partner NGO", "caseworker")):  # fmt: skip
            try:
                accounts.find_user(session, email)
            except repo.StoreError:
                accounts.add_user(session, email, organisation_name=org, role=role,
                                  password=PASSWORD, actor=operator, two_factor=False)  # fmt: skip
    encrypted = {d: [cipher.encrypt(t) for t in texts] for d, texts in TEXTS.items()}
    addresses = [cipher.encrypt(f"+6012{n:07d}") for n in range(200)]
    whos = [(w, cipher.encrypt(w)) for w in EMPLOYERS]
    places = [(p, cipher.encrypt(p)) for p in PLACES]
    what = cipher.encrypt("They took my passport and do not pay me.")
    contacts_t = table("contacts", *[column(c) for c in (
        "id", "pseudonym", "channel", "address", "language", "country", "opted_out",
        "sms_plain", "sms_plain_offered", "created_at", "last_seen_at")])  # fmt: skip
    cases_t = table("cases", *[column(c) for c in (
        "id", "reference", "contact_id", "organisation", "category", "urgency", "status",
        "ilo_indicators", "language", "country", "channel", "assigned_to", "handoff",
        "simulated", "who", "workplace", "city", "what_happened", "consent_ngo", "may_identify",
        "awaiting_since", "last_inbound_at", "created_at", "updated_at")])  # fmt: skip
    messages_t = table("messages", *[column(c) for c in (
        "contact_id", "case_id", "direction", "channel", "text", "language", "intent",
        "confidence", "author", "created_at", "status", "attempts", "parts_sent")])  # fmt: skip
    terms_t = table("case_terms", column("case_id"), column("term"))
    now = dt.datetime.now(dt.timezone.utc)
    languages = list(taxonomy.LANGUAGE_NAMES)
    countries = ["MY", "TH", "HK", "SG", "TW", "QA"]
    with db.engine.begin() as connection:
        start_id = (connection.execute(select(func.max(Case.id))).scalar() or 0) + 1
    per_case = max(1, n_messages // max(n_cases, 1))
    started = time.perf_counter()
    for batch_start in range(0, n_cases, BATCH):
        size = min(BATCH, n_cases - batch_start)
        contacts, cases, messages, terms = [], [], [], []
        for i in range(size):
            case_id = start_id + batch_start + i
            created = now - dt.timedelta(minutes=rng.randint(1, 60 * 24 * 365))
            language = rng.choice(languages)
            country = rng.choice(countries)
            channel = _weighted(rng, [("whatsapp", 5), ("telegram", 3), ("sms", 2)])
            status = _weighted(rng, [("new", 20), ("triaged", 15), ("in_progress", 20),
                                     ("referred", 5), ("resolved", 20),
                                     ("closed", 20)])  # fmt: skip
            urgency = _weighted(rng, [("immediate", 2), ("high", 10), ("normal", 80),
                                      ("info", 8)])  # fmt: skip
            who, who_c = rng.choice(whos)
            place, place_c = rng.choice(places)
            contacts.append({
                "id": case_id, "pseudonym": f"seed-{case_id}", "channel": channel,
                "address": rng.choice(addresses), "language": language, "country": country,
                "opted_out": False, "sms_plain": False, "sms_plain_offered": False,
                "created_at": created, "last_seen_at": created,
            })  # fmt: skip
            waiting = created + dt.timedelta(minutes=rng.randint(0, 600))
            cases.append({
                "id": case_id, "reference": f"HX-{100_000 + case_id}",
                "contact_id": case_id,
                "organisation": _weighted(rng, [(ORGANISATIONS[0], 4), (ORGANISATIONS[1], 4),
                                                (ORGANISATIONS[2], 2)]),
                "category": rng.choice(taxonomy.CASE_CATEGORIES), "urgency": urgency,
                "status": status, "ilo_indicators": "[]", "language": language,
                "country": country, "channel": channel,
                "assigned_to": rng.choice([None, None, "ana@partner.org", "sup@helpline.org"]),
                "handoff": False, "simulated": False, "who": who_c, "workplace": place_c,
                "city": place_c, "what_happened": what, "consent_ngo": rng.random() < 0.8,
                "may_identify": rng.random() < 0.5,
                "awaiting_since": waiting if rng.random() < 0.6 else None,
                "last_inbound_at": waiting, "created_at": created, "updated_at": created,
            })  # fmt: skip
            terms.extend({"case_id": case_id, "term": t}
                         for t in repo.search_terms(key, f"{who} {place}"))  # fmt: skip
            for m in range(per_case):
                direction = "in" if m % 2 == 0 else "out"
                messages.append({
                    "contact_id": case_id, "case_id": case_id, "direction": direction,
                    "channel": channel, "text": rng.choice(encrypted[direction]),
                    "language": language, "intent": "wages" if direction == "in" else None,
                    "confidence": 0.9 if direction == "in" else None,
                    "author": None if direction == "in" else "bot",
                    "created_at": created + dt.timedelta(minutes=m),
                    "status": "done" if direction == "in" else "sent", "attempts": 0,
                    "parts_sent": 0,
                })  # fmt: skip
        with db.engine.begin() as connection:
            connection.execute(insert(contacts_t), contacts)
            connection.execute(insert(cases_t), cases)
            connection.execute(insert(messages_t), messages)
            connection.execute(insert(terms_t), terms)
        done = batch_start + size
        print(f"\r  seeded {done}/{n_cases} cases ({time.perf_counter() - started:.0f} s)",
              end="", file=sys.stderr, flush=True)  # fmt: skip
    print(file=sys.stderr)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('cases', 'id'), max(id)) FROM cases"
                )
                connection.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('contacts', 'id'), max(id))"
                    " FROM contacts"
                )
    else:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    db.dispose()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--append", action="store_true", help="add to a store that has cases")
    args = ap.parse_args(argv)
    seconds = seed(args.database_url, args.cases, args.messages, append=args.append)
    print(f"{args.cases} cases, {args.messages} messages in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
