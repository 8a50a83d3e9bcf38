"""The caseworkers' dashboard over HTTP (Starlette's test client, a real SQLite case store):
sign-in, two-factor, sessions, CSRF, headers, organisation isolation on every route, routing
and consent, masking, the queue's order, filters and search, replies, roles."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from bot import settings as settings_module
from bot.dashboard.app import Config, create_app
from bot.store import Database, accounts
from bot.store import cases as service
from bot.store import repository as repo
from bot.store.models import AuditEvent, CaseTerm, LoginAttempt, Message

PASSWORD = "correct horse battery"
OP = service.Actor.operator("test")


@pytest.fixture
def db(tmp_path):
    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": f"sqlite:///{tmp_path}/cases.db"}
    )
    database = Database(settings.database_url, settings.encryption_keys)
    database.upgrade()
    with database.session() as session:
        accounts.add_organisation(session, "Helpline", actor=OP)  # the deploying one
        accounts.add_organisation(session, "Partner NGO", actor=OP)
        accounts.add_organisation(session, "Other NGO", actor=OP)
        for email, org, role in (
            ("admin@helpline.org", "Helpline", "admin"),
            ("sup@helpline.org", "Helpline", "supervisor"),
            ("ana@partner.org", "Partner NGO", "caseworker"),
            ("ben@partner.org", "Partner NGO", "supervisor"),
            ("eve@other.org", "Other NGO", "supervisor"),
        ):
            accounts.add_user(
                session, email, organisation_name=org, role=role, password=PASSWORD,
                actor=OP, two_factor=False,
            )  # fmt: skip
        partner = accounts.organisation(session, "Partner NGO")
        other = accounts.organisation(session, "Other NGO")
        from bot.store.models import RoutingRule

        session.add(RoutingRule(country="MY", organisation=partner, position=1))
        session.add(RoutingRule(country="TH", organisation=other, position=2))
    yield database
    database.dispose()


def app_for(db, *, two_factor=False, development=True):
    config = Config(development=development, require_two_factor=two_factor, search_key=b"k" * 32,
                    live_seconds=1.5)  # a live stream ends after 1.5 s here  # fmt: skip
    # Outside development the cookies are Secure: the client must speak https to get them back.
    scheme = "http" if development else "https"
    return TestClient(create_app(db, config), base_url=f"{scheme}://testserver")


def new_case(db, *, country="MY", consent=True, urgency="normal", address="+60123456789", **kw):
    with db.session() as session:
        contact = repo.upsert_contact(
            session, pseudonym=f"p-{address}", channel="whatsapp", address=address, language="my"
        )
        case, _ = repo.create_case(
            session, contact=contact, category="wages", urgency=urgency, country=country,
            language="my", consent_ngo=consent, **kw,
        )  # fmt: skip
        repo.add_message(
            session, contact=contact, case=case, direction="in", text="လစာ မရဘူး ACME"
        )
        return case.reference


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client, email, password=PASSWORD, code="", expect=303):
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "email": email, "password": password, "code": code},
        follow_redirects=False,
    )
    assert response.status_code == expect, response.text[:300]
    return response


def signed_in(db, email, **kw):
    client = app_for(db, **kw)
    sign_in(client, email)
    return client


def page_csrf(client, path="/"):
    return csrf_of(client.get(path).text)


# --- sign-in, two-factor, sessions ------------------------------------------------------------


def test_sign_in_failures_all_look_the_same_and_slow_down(db):
    client = app_for(db)
    bodies = set()
    for email, password in (("nobody@x.org", PASSWORD), ("ana@partner.org", "wrong password!!")):
        response = sign_in(client, email, password, expect=401)
        bodies.add(re.sub(r'value="[^"]*"', "", response.text))
    assert len(bodies) == 1  # the same page, whatever was wrong
    assert "Sign-in failed: check your e-mail, password and code." in next(iter(bodies))
    # Per account: after FREE_FAILURES failures, even the right password must wait.
    for _ in range(accounts.FREE_FAILURES):
        sign_in(client, "ben@partner.org", "wrong password!!", expect=401)
    response = sign_in(client, "ben@partner.org", PASSWORD, expect=401)
    assert "Too many attempts" in response.text
    with db.session() as session:
        # Nothing in clear in the attempts table.
        stored = session.execute(select(LoginAttempt.account, LoginAttempt.address)).all()
        assert all("@" not in a and "testclient" not in b for a, b in stored)


def test_delays_grow_per_address_too(db):
    with db.session() as session:
        now = accounts.utcnow()
        for n in range(accounts.FREE_FAILURES + 3):
            session.add(LoginAttempt(account=f"acct{n}", address="addr", ok=False, at=now))
        session.flush()
        long = accounts.retry_after(session, account="fresh", address="addr", now=now)
        session.execute(update(LoginAttempt).where(LoginAttempt.account == "acct0").values(ok=True))
        shorter = accounts.retry_after(session, account="fresh", address="addr", now=now)
    assert long > shorter >= 1


def test_two_factor_enrolment_then_code_required_and_recovery_code_single_use(db):
    client = app_for(db, two_factor=True)
    response = sign_in(client, "ana@partner.org")
    assert response.headers["location"] == "/enrol"
    assert client.get("/", follow_redirects=False).status_code == 303  # not signed in fully
    page = client.get("/enrol")
    assert 'src="data:image/svg+xml' in page.text
    secret = re.search(r'class="secret">([A-Z2-7]+)<', page.text).group(1)
    bad = client.post("/enrol", data={"csrf": csrf_of(page.text), "code": "000000"})
    assert bad.status_code == 400
    done = client.post(
        "/enrol", data={"csrf": csrf_of(page.text), "code": pyotp.TOTP(secret).now()}
    )
    codes = re.findall(r"<li><code>([0-9a-f]{10})</code></li>", done.text)
    assert len(codes) == accounts.RECOVERY_CODES
    assert client.get("/").status_code == 200

    fresh = app_for(db, two_factor=True)
    sign_in(fresh, "ana@partner.org", code="", expect=401)  # the code is now required
    sign_in(fresh, "ana@partner.org", code=pyotp.TOTP(secret).now())
    again = app_for(db, two_factor=True)
    sign_in(again, "ana@partner.org", code=codes[0])
    sign_in(app_for(db, two_factor=True), "ana@partner.org", code=codes[0], expect=401)


def test_session_cookie_flags_idle_and_lifetime_limits(db):
    client = app_for(db, development=False)
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "email": "ana@partner.org", "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    token = re.search(r"helpline_session=([^;]+)", cookie).group(1)
    with db.session() as session:
        assert accounts.current_session(session, token) is not None
        later = accounts.utcnow() + accounts.IDLE + dt.timedelta(seconds=1)
        assert accounts.current_session(session, token, now=later) is None  # idle: gone
    with db.session() as session:
        user = accounts.find_user(session, "ben@partner.org")
        token = accounts.open_session(session, user, verified=True)
    start = accounts.utcnow()
    with db.session() as session:
        # Busy every 25 minutes (each look touches the session): alive until 12 hours, no longer.
        for step in range(1, 29):
            now = start + dt.timedelta(minutes=25 * step)
            assert accounts.current_session(session, token, now=now) is not None, step
        late = start + accounts.LIFETIME + dt.timedelta(seconds=5)
        assert accounts.current_session(session, token, now=late) is None


def test_disabled_user_is_signed_out(db):
    client = signed_in(db, "ana@partner.org")
    assert client.get("/").status_code == 200
    with db.session() as session:
        accounts.disable_user(session, "ana@partner.org", actor=OP)
    assert client.get("/", follow_redirects=False).status_code == 303
    sign_in(app_for(db), "ana@partner.org", expect=401)


# --- headers, CSRF ----------------------------------------------------------------------------


def test_security_headers_and_no_cache_on_case_pages(db):
    ref = new_case(db)
    client = signed_in(db, "ana@partner.org")
    for path in ("/", f"/cases/{ref}", "/login"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert "script-src 'self'" in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "<script>" not in response.text and " on" + "click=" not in response.text
    assert "no-store" not in client.get("/static/dashboard.css").headers.get("cache-control", "")


@pytest.mark.parametrize(
    "action,data",
    [
        ("reply", {"text": "hi"}),
        ("assign", {"to": "me"}),
        ("status", {"status": "triaged"}),
        ("urgency", {"urgency": "high"}),
        ("classify", {"category": "fees"}),
        ("note", {"note": "n"}),
        ("release", {}),
    ],
)
def test_every_case_form_needs_its_csrf_token(db, action, data):
    ref = new_case(db)
    client = signed_in(db, "ana@partner.org")
    refused = client.post(f"/cases/{ref}/{action}", data=data, follow_redirects=False)
    assert refused.status_code == 403
    forged = client.post(
        f"/cases/{ref}/{action}", data={**data, "csrf": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    token = page_csrf(client, f"/cases/{ref}")
    ok = client.post(f"/cases/{ref}/{action}", data={**data, "csrf": token}, follow_redirects=False)
    assert ok.status_code == 303


def test_sign_in_and_language_forms_need_a_token_too(db):
    client = app_for(db)
    assert client.post("/login", data={"email": "a@b.c", "password": "x"}).status_code == 403
    assert client.post("/language", data={"lang": "th"}).status_code == 403


# --- isolation ---------------------------------------------------------------------------------


def test_every_case_route_is_404_for_another_organisation_and_audited(db):
    ref = new_case(db, country="MY", consent=True)  # routed to Partner NGO
    with db.session() as session:
        case = repo.find_case(session, reference=ref)
        message = case.messages[0]
        from bot.store.models import Attachment

        session.add(Attachment(message=message, content_type="image/jpeg", size=3,
                               sha256="0" * 64, data=b"abc"))  # fmt: skip
        session.flush()
        attachment = message.attachments[0].id
    owner = signed_in(db, "ana@partner.org")
    assert owner.get(f"/cases/{ref}").status_code == 200
    assert owner.get(f"/cases/{ref}/attachments/{attachment}").content == b"abc"
    outsider = signed_in(db, "eve@other.org")
    token = page_csrf(outsider)
    gets = [f"/cases/{ref}", f"/cases/{ref}/attachments/{attachment}"]
    for path in gets:
        assert outsider.get(path).status_code == 404, path
    actions = ["reply", "assign", "status", "urgency", "classify", "note", "release", "reveal"]
    for action in actions:
        response = outsider.post(
            f"/cases/{ref}/{action}",
            data={"csrf": token, "text": "x", "to": "me", "status": "triaged",
                  "urgency": "high", "category": "fees", "note": "x",
                  "reason": "to call the worker back"},
            follow_redirects=False,
        )  # fmt: skip
        assert response.status_code == 404, action
    # The live stream of the case ends at once.
    with outsider.stream("GET", f"/live?case={ref}") as stream:
        body = b"".join(stream.iter_bytes())
    assert b"event: gone" in body
    assert ref not in outsider.get("/?status=any").text
    assert f'href="/cases/{ref}"' not in outsider.get(f"/?q={ref}").text
    assert ref not in outsider.get("/export.csv?status=any").text
    assert owner.get("/export.csv").status_code == 404
    # An unknown reference looks exactly the same.
    assert outsider.get("/cases/HX-000001").status_code == 404
    with db.session() as session:
        refused = session.execute(
            select(AuditEvent.action, AuditEvent.actor, AuditEvent.detail).where(
                AuditEvent.action == "access_refused"
            )
        ).all()
    purposes = {d["purpose"] for _, actor, d in refused if actor == "eve@other.org"}
    assert {"view", "attachment", "live", *actions} <= purposes
    with db.session() as session:
        case = repo.find_case(session, reference=ref)
        assert case.assigned_to is None and case.status == "new" and case.urgency == "normal"
        assert not any(m.direction == "out" for m in case.messages)


def test_consent_decides_who_sees_a_case_and_emergencies_reach_the_deploying_org(db):
    consented = new_case(db, country="MY", consent=True, address="+601")
    private = new_case(db, country="MY", consent=False, address="+602")
    unasked = new_case(db, country="MY", consent=None, address="+603")
    emergency = new_case(db, country="MY", consent=True, urgency="immediate", address="+604")
    with db.session() as session:
        partner = service.Actor.of(accounts.find_user(session, "ana@partner.org"))
        deploying = service.Actor.of(accounts.find_user(session, "sup@helpline.org"))
        seen_by_partner = {c.reference for c in service.queue(session, partner)}
        seen_by_deploying = {c.reference for c in service.queue(session, deploying)}
    assert seen_by_partner == {consented, emergency}
    assert seen_by_deploying == {private, unasked, emergency}


def test_fields_the_worker_did_not_want_shared_are_masked_for_partners(db):
    ref = new_case(db, may_identify=False, workplace="Golden Glove Factory", who="ACME Sdn Bhd")
    partner = signed_in(db, "ana@partner.org").get(f"/cases/{ref}").text
    assert "Golden Glove" not in partner and "ACME Sdn Bhd" not in partner
    assert "hidden: the worker asked not to be identified" in partner
    assert "+60123456789" not in partner  # the worker's number is never shown
    with db.session() as session:
        repo.flag_danger(session, case=repo.find_case(session, reference=ref), kind="violence")
    deploying = signed_in(db, "sup@helpline.org").get(f"/cases/{ref}").text
    assert "Golden Glove Factory" in deploying and "+60123456789" not in deploying


def test_admin_sees_counts_of_every_organisation_but_not_their_cases(db):
    new_case(db, country="TH", consent=True, address="+66")
    client = signed_in(db, "admin@helpline.org")
    page = client.get("/admin").text
    assert "Other NGO" in page
    with db.session() as session:
        admin = service.Actor.of(accounts.find_user(session, "admin@helpline.org"))
        assert service.counts_by_organisation(session, admin) == {"Other NGO": {"normal": 1}}
        assert service.queue(session, admin) == []
    assert signed_in(db, "ana@partner.org").get("/admin").status_code == 404


# --- the queue ---------------------------------------------------------------------------------


def test_queue_most_urgent_first_then_longest_waiting_with_filters(db):
    first = new_case(db, address="+1")
    second = new_case(db, address="+2")
    urgent = new_case(db, address="+3", urgency="high")
    with db.session() as session:  # the first worker waited less long than the second
        for ref, minutes in ((first, 10), (second, 300)):
            case = repo.find_case(session, reference=ref)
            case.awaiting_since = accounts.utcnow() - dt.timedelta(minutes=minutes)
    client = signed_in(db, "ana@partner.org")
    page = client.get("/").text
    found = [m for m in re.findall(r"HX-\d{6}", page) if m in (first, second, urgent)]
    order = list(dict.fromkeys(found))  # each row names its case more than once
    assert order == [urgent, second, first]  # high first; then the longer wait (300 > 10 min)
    assert "overdue-label" not in page  # within every target (normal: 2 days, high: 4 hours)
    assert re.findall(r"HX-\d{6}", client.get("/?urgency=high").text).count(urgent) >= 1
    assert second not in client.get("/?urgency=high").text
    token = page_csrf(client, f"/cases/{first}")
    client.post(f"/cases/{first}/assign", data={"csrf": token, "to": "me"})
    mine = client.get("/?assigned=me").text
    assert first in mine and second not in mine
    assert first not in client.get("/?assigned=none").text


def test_overdue_by_response_time_target(db):
    late = new_case(db, address="+5", urgency="immediate")
    on_time = new_case(db, address="+6", urgency="immediate")
    with db.session() as session:
        repo.find_case(session, reference=late).awaiting_since = accounts.utcnow() - dt.timedelta(
            minutes=20
        )
    page = signed_in(db, "sup@helpline.org").get("/?overdue=1").text
    assert late in page and on_time not in page


def test_search_by_employer_without_storing_the_name(db):
    ref = new_case(db, who="Công ty TNHH Hoa Mai", workplace="ACME Gloves")
    other = new_case(db, address="+7", who="Other Company")
    client = signed_in(db, "ana@partner.org")
    for query in ("hoa mai", "Cong ty Hoa", "acme", ref.lower()):
        page = client.get("/", params={"q": query}).text
        assert ref in page and other not in page, query
    assert ref not in client.get("/", params={"q": "hoa lan"}).text
    with db.session() as session:
        terms = session.execute(select(CaseTerm.term)).scalars().all()
    assert terms and not any(w in " ".join(terms) for w in ("hoa", "acme", "mai", "cong"))
    files = Path(db.url.replace("sqlite:///", "")).parent.glob("cases.db*")  # with its WAL
    assert not any(b"ACME" in f.read_bytes() or b"Hoa Mai" in f.read_bytes() for f in files)


def test_simulated_cases_never_enter_the_real_queue(db):
    simulated = new_case(db, address="sim:12345678", consent=False)
    real = new_case(db, address="+8", consent=False)
    admin = signed_in(db, "admin@helpline.org")
    queue = admin.get("/?status=any").text
    assert real in queue and simulated not in queue
    assert simulated in admin.get("/?status=any&simulated=1").text
    production_admin = app_for(db, development=False)
    sign_in(production_admin, "admin@helpline.org")
    assert simulated not in production_admin.get("/?status=any&simulated=1").text


# --- working a case ----------------------------------------------------------------------------


def test_reply_is_queued_on_the_workers_channel_and_conflicts_ask_to_confirm(db):
    ref = new_case(db)
    ana = signed_in(db, "ana@partner.org")
    ben = signed_in(db, "ben@partner.org")
    page = ana.get(f"/cases/{ref}").text
    seen = re.search(r'name="seen_reply_id" value="(\d+)"', page).group(1)
    ben_page = ben.get(f"/cases/{ref}")
    assert "ana@partner.org" in ben_page.text  # "Also viewing"
    ben.post(f"/cases/{ref}/reply", data={"csrf": csrf_of(ben_page.text), "text": "From Ben"})
    conflict = ana.post(
        f"/cases/{ref}/reply",
        data={"csrf": csrf_of(page), "text": "From Ana", "seen_reply_id": seen},
    )
    assert conflict.status_code == 409 and "From Ana" in conflict.text
    confirmed = ana.post(
        f"/cases/{ref}/reply",
        data={"csrf": csrf_of(page), "text": "From Ana", "confirm": "1"},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    with db.session() as session:
        out = session.execute(
            select(Message).where(Message.direction == "out").order_by(Message.id)
        ).scalars().all()
        assert [(m.text, m.author, m.status, m.channel) for m in out] == [
            ("From Ben", "ben@partner.org", "queued", "whatsapp"),
            ("From Ana", "ana@partner.org", "queued", "whatsapp"),
        ]
        assert repo.find_case(session, reference=ref).awaiting_since is None
    transcript = ana.get(f"/cases/{ref}").text
    assert "delivery: queued" in transcript and "လစာ မရဘူး" in transcript


def test_caseworker_assigns_only_to_themselves_supervisor_to_colleagues(db):
    ref = new_case(db)
    ana = signed_in(db, "ana@partner.org")
    token = page_csrf(ana, f"/cases/{ref}")
    response = ana.post(f"/cases/{ref}/assign", data={"csrf": token, "to": "ben@partner.org"})
    assert "assigns cases to themselves only" in response.text
    ben = signed_in(db, "ben@partner.org")
    token = page_csrf(ben, f"/cases/{ref}")
    ben.post(f"/cases/{ref}/assign", data={"csrf": token, "to": "ana@partner.org"})
    refused = ben.post(f"/cases/{ref}/assign", data={"csrf": token, "to": "eve@other.org"})
    assert "not an active colleague" in refused.text
    with db.session() as session:
        assert repo.find_case(session, reference=ref).assigned_to == "ana@partner.org"


def test_status_workflow_notes_release_and_the_audit_trail(db):
    ref = new_case(db)
    ben = signed_in(db, "ben@partner.org")
    token = page_csrf(ben, f"/cases/{ref}")
    bad = ben.post(f"/cases/{ref}/status", data={"csrf": token, "status": "resolved"})
    assert "cannot become resolved" in bad.text
    for status in ("triaged", "in_progress", "resolved"):
        ben.post(f"/cases/{ref}/status", data={"csrf": token, "status": status})
    ben.post(f"/cases/{ref}/note", data={"csrf": token, "note": "Called the employer"})
    ben.post(f"/cases/{ref}/classify",
             data={"csrf": token, "category": "fees", "indicators": ["debt_bondage"]})  # fmt: skip
    with db.session() as session:
        case = repo.find_case(session, reference=ref)
        assert (case.status, case.category, case.ilo_indicators) == (
            "resolved", "fees", ["debt_bondage"])  # fmt: skip
        repo.add_message(session, contact=case.contact, case=case, direction="in", text="again")
        assert case.status == "in_progress"  # a worker's message reopens a resolved case
    page = ben.get(f"/cases/{ref}").text
    assert "Audit trail" in page and "Called the employer" in page
    ana_page = signed_in(db, "ana@partner.org").get(f"/cases/{ref}").text
    assert "Audit trail" not in ana_page  # caseworkers do not read the audit trail
    with db.session() as session:
        kinds = [e.kind for e in repo.find_case(session, reference=ref).events]
    assert {"viewed", "status_changed", "note", "classified"} <= set(kinds)


def test_canned_replies_in_the_workers_language_with_meaning(db):
    ref = new_case(db)
    page = signed_in(db, "ana@partner.org").get(f"/cases/{ref}", params={"template": "received"})
    text = page.text
    assert "We got your report" in text  # the English meaning beside it
    burmese = re.search(r'<textarea id="reply-text"[^>]*>([^<]+)</textarea>', text).group(1)
    assert ref in burmese and re.search(r"[\u1000-\u109f]", burmese)


def test_language_switcher_translates_the_dashboard(db):
    client = signed_in(db, "ana@partner.org")
    token = page_csrf(client)
    client.post("/language", data={"csrf": token, "lang": "th", "next": "/"})
    page = client.get("/").text
    assert 'lang="th"' in page and "ออกจากระบบ" in page  # "Sign out"


def test_health_check(db):
    assert app_for(db).get("/healthz").text == "ok"


def test_open_redirect_refused_after_sign_in(db):
    client = app_for(db)
    page = client.get("/login?next=//evil.example/")
    response = client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "email": "ana@partner.org", "password": PASSWORD,
              "next": "//evil.example/"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.headers["location"] == "/"


def test_revealing_a_hidden_identity_needs_a_reason_and_an_admin(db):
    ref = new_case(db, may_identify=False, workplace="Golden Glove Factory")
    ana = signed_in(db, "ana@partner.org")  # a caseworker may not ask
    assert "Ask an admin" not in ana.get(f"/cases/{ref}").text
    ben = signed_in(db, "ben@partner.org")
    page = ben.get(f"/cases/{ref}").text
    assert "Golden Glove" not in page and "Ask an admin" in page
    short = ben.post(f"/cases/{ref}/reveal", data={"csrf": csrf_of(page), "reason": "pls"})
    assert "10 characters" in short.text
    ben.post(f"/cases/{ref}/reveal",
             data={"csrf": csrf_of(page), "reason": "The worker asked us to call the factory"})
    assert "Golden Glove" not in ben.get(f"/cases/{ref}").text  # not before an admin approves
    admin = signed_in(db, "admin@helpline.org")
    admin_page = admin.get("/admin").text
    assert ref in admin_page and "The worker asked us to call the factory" in admin_page
    request_id = re.search(r'action="/admin/reveals/(\d+)"', admin_page).group(1)
    assert signed_in(db, "sup@helpline.org").post(
        f"/admin/reveals/{request_id}", data={"csrf": csrf_of(admin_page), "decision": "approve"}
    ).status_code in (403, 404)  # a supervisor does not decide
    admin.post(f"/admin/reveals/{request_id}",
               data={"csrf": csrf_of(admin_page), "decision": "approve"})  # fmt: skip
    assert "Golden Glove Factory" in ben.get(f"/cases/{ref}").text
    assert "Golden Glove" not in signed_in(db, "eve@other.org").get(f"/cases/{ref}").text
    with db.session() as session:
        kinds = [e.kind for e in repo.find_case(session, reference=ref).events]
    assert "reveal_requested" in kinds and "reveal_approved" in kinds


def test_export_is_for_supervisors_without_personal_data_or_formulas(db):
    ref = new_case(db, who="=HYPERLINK(evil)", workplace="ACME")
    ben = signed_in(db, "ben@partner.org")
    csv_text = ben.get("/export.csv").text
    assert ref in csv_text.splitlines()[1]
    assert "ACME" not in csv_text and "HYPERLINK" not in csv_text
    assert csv_text.splitlines()[0].startswith("reference,created_at,urgency")
    with db.session() as session:
        assert session.execute(
            select(AuditEvent).where(AuditEvent.action == "export")
        ).scalar() is not None


def test_supervisor_reads_a_colleagues_trail_only_in_their_organisation(db):
    ref = new_case(db)
    ana = signed_in(db, "ana@partner.org")
    ana.get(f"/cases/{ref}")
    ben = signed_in(db, "ben@partner.org")
    trail = ben.get("/audit", params={"user": "ana@partner.org"}).text
    assert ref in trail and "viewed" in trail and "signed in" in trail
    assert ben.get("/audit", params={"user": "eve@other.org"}).status_code == 404
    assert ana.get("/audit").status_code == 404


def test_response_targets_per_organisation(db, monkeypatch, tmp_path):
    late = new_case(db, address="+9")  # normal: 2 days by default
    with db.session() as session:
        repo.find_case(session, reference=late).awaiting_since = accounts.utcnow() - dt.timedelta(
            hours=5
        )
    ben = signed_in(db, "ben@partner.org")
    assert late not in ben.get("/?overdue=1").text
    from bot import cli

    monkeypatch.setenv("HELPLINE_DATABASE_URL", db.url)
    assert cli.main(["orgs", "set-response", "Partner NGO", "normal=240"]) == 0
    assert late in ben.get("/?overdue=1").text
    assert cli.main(["orgs", "set-response", "Partner NGO", "normal=0"]) == 2


def test_cli_creates_organisations_and_users_and_prints_the_otpauth_uri_once(
    tmp_path, monkeypatch, capsys
):
    import io

    from bot import cli
    from bot.store.crypto import generate_key

    monkeypatch.setenv("HELPLINE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("HELPLINE_ENV", "production")
    monkeypatch.setenv("HELPLINE_ENCRYPTION_KEY", generate_key())
    monkeypatch.setenv("HELPLINE_PSEUDONYM_KEY", "a-pseudonym-key-for-this-test-only")
    assert cli.main(["orgs", "add", "Our helpline"]) == 2  # no schema yet: only db upgrade makes it
    assert "helpline db upgrade" in capsys.readouterr().err
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["orgs", "add", "Our helpline"]) == 0
    assert cli.main(["orgs", "add", "Partner"]) == 0
    assert "the deploying organisation" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["users", "add", "Ana@Example.org", "--org", "Our helpline",
                     "--role", "admin"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    uri = next(line for line in out.splitlines() if line.startswith("otpauth://totp/"))
    assert "secret=" in uri and PASSWORD not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["users", "add", "x@example.org", "--org", "Partner", "--role", "admin"]) == 2
    assert "only the deploying organisation has admins" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["users", "reset", "ana@example.org"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + " new\n"))
    assert cli.main(["users", "reset", "ana@example.org"]) == 0
    assert "otpauth://" in capsys.readouterr().out  # a new secret, shown once
    assert cli.main(["users", "disable", "ana@example.org"]) == 0
    settings = settings_module.load()  # HELPLINE_ENV is set by the test
    db = Database(settings.database_url, settings.encryption_keys)
    with db.session() as session:
        user = accounts.find_user(session, "ana@example.org")
        assert user.disabled_at is not None and user.totp_secret and not user.totp_enabled
        raw = (tmp_path / "cli.db").read_bytes()
        assert user.totp_secret.encode() not in raw  # encrypted at rest
    db.dispose()


def test_admin_adds_organisations_and_users_and_disables_them_in_the_dashboard(db):
    admin = signed_in(db, "admin@helpline.org")
    token = page_csrf(admin, "/admin")
    admin.post("/admin/orgs", data={"csrf": token, "name": "Tenaganita"})
    added = admin.post("/admin/users", data={
        "csrf": token, "email": "new@tenaganita.org", "organisation": "Tenaganita",
        "role": "caseworker", "password": PASSWORD,
    })  # fmt: skip
    assert "added new@tenaganita.org" in added.text
    refused = admin.post("/admin/users", data={
        "csrf": token, "email": "x@tenaganita.org", "organisation": "Tenaganita",
        "role": "admin", "password": PASSWORD,
    })  # fmt: skip
    assert "only the deploying organisation has admins" in refused.text
    newcomer = signed_in(db, "new@tenaganita.org")
    assert newcomer.get("/").status_code == 200
    admin.post("/admin/disable", data={"csrf": token, "email": "new@tenaganita.org"})
    assert newcomer.get("/", follow_redirects=False).status_code == 303
    assert "cannot disable yourself" in admin.post(
        "/admin/disable", data={"csrf": token, "email": "admin@helpline.org"}
    ).text
    supervisor = signed_in(db, "sup@helpline.org")
    token = page_csrf(supervisor)
    for what in ("orgs", "users", "disable", "rules"):
        assert supervisor.post(f"/admin/{what}", data={"csrf": token}).status_code == 404
    with db.session() as session:
        actions = set(session.execute(select(AuditEvent.action)).scalars())
    assert {"organisation_added", "user_added", "user_disabled"} <= actions


def test_a_user_changes_their_password(db):
    client = signed_in(db, "ana@partner.org")
    token = page_csrf(client, "/account")
    wrong = client.post("/account/password", data={
        "csrf": token, "password": "not my password", "new_password": "a new long password",
        "new_password_again": "a new long password"})  # fmt: skip
    assert "current password is not right" in wrong.text
    client.post("/account/password", data={
        "csrf": token, "password": PASSWORD, "new_password": "a new long password",
        "new_password_again": "a new long password"})  # fmt: skip
    assert client.get("/", follow_redirects=False).status_code == 303  # signed out everywhere
    sign_in(app_for(db), "ana@partner.org", expect=401)
    sign_in(app_for(db), "ana@partner.org", password="a new long password")


def test_live_queue_sends_what_changed_since_the_page_was_drawn_and_resumes_without_repeats(db):
    client = signed_in(db, "sup@helpline.org")
    page = client.get("/").text
    cursor = re.search(r'data-live="/live\?seen=([0-9.]+)"', page).group(1)
    ref = new_case(db, consent=False, urgency="immediate")  # after drawing, before the stream
    body = client.get(f"/live?seen={cursor}").text
    assert "event: new_case" in body and ref in body and '"urgency": "immediate"' in body
    resumed_at = re.findall(r"^id: ([0-9.]+)$", body, re.M)[-1]
    again = client.get("/live?seen=" + cursor, headers={"Last-Event-ID": resumed_at}).text
    assert "event: new_case" not in again  # the browser's Last-Event-ID wins: no repeat
    partner = signed_in(db, "eve@other.org")
    cursor = re.search(r'data-live="/live\?seen=([0-9.]+)"', partner.get("/").text).group(1)
    new_case(db, consent=False, urgency="immediate", address="+77")
    assert "new_case" not in partner.get(f"/live?seen={cursor}").text  # not theirs to see


def test_live_case_page_refreshes_when_a_delivery_state_changes(db):
    ref = new_case(db)
    client = signed_in(db, "ana@partner.org")
    token = page_csrf(client, f"/cases/{ref}")
    client.post(f"/cases/{ref}/reply", data={"csrf": token, "text": "hello"})
    page = client.get(f"/cases/{ref}").text
    seen = re.search(r"data-live=\"/live\?case=HX-\d+&(?:amp;)?seen=([0-9a-f]+)\"", page).group(1)
    assert "event: case" not in client.get(f"/live?case={ref}&seen={seen}").text
    with db.session() as session:  # the channel's queue sends it, between drawing and streaming
        reply = session.execute(select(Message).where(Message.author == "ana@partner.org"))
        reply.scalar_one().status = "sent"
    assert "event: case" in client.get(f"/live?case={ref}&seen={seen}").text
    def views() -> int:
        with db.session() as session:
            events = repo.find_case(session, reference=ref).events
            return len([e for e in events if e.kind == "viewed"])

    before = views()
    partial = client.get(f"/cases/{ref}", headers={"HX-Request": "true", "HX-Target": "transcript"})
    assert "delivery: sent" in partial.text and "<html" not in partial.text
    assert views() == before  # a live refresh is not a view in the audit trail
