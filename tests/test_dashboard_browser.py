"""The caseworkers' dashboard in a real browser (Debian's chromium, driven by Playwright),
against the real `helpline run` (Rasa, actions, channels' queue, dashboard) with Telegram's API
faked on loopback.

A worker writes an emergency in Burmese on Telegram; a caseworker signed in with a TOTP code
sees it appear at the top of the queue without reloading, opens it, sends a canned Burmese
reply and watches its delivery state change; the worker's side (the fake Telegram API) gets it.
A user of another organisation gets 404 on the case's URL; a form without its CSRF token is
refused; axe-core finds no serious or critical violation on any page. The screenshots in docs/
are taken here.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pyotp
import pytest

from bot import settings as settings_module
from bot.store import Database, accounts
from bot.store import cases as service
from bot.store.models import Case, Message
from tests.browser import CHROMIUM_ARGS, find_chromium
from tests.fake_providers import FakeTelegram
from tests.live_server import free_port, start

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "vendor" / "axe-core-4.14.1.min.js"
DOCS = ROOT / "docs"
TOKEN = "123456:telegram-test-token"
SECRET = "telegram-webhook-secret-0123"
CHAT = 5550123499
PASSWORD = "correct horse battery"
# "My employer beats me. I am locked in the room. Please help."
EMERGENCY_MY = "အလုပ်ရှင်က ကျွန်မကို ရိုက်နေတယ်။ အခန်းထဲမှာ ပိတ်ထားတယ်။ ကူညီပါ"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, model):
    telegram = FakeTelegram()
    dashboard_port = free_port()
    server, stop = start(
        tmp_path_factory.mktemp("dashboard"),
        {
            "HELPLINE_ENV": "development",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_API_BASE": telegram.url,
            "HELPLINE_PUBLIC_URL": "https://helpline.example.org",
            "HELPLINE_CHANNEL_RETRY_SECONDS": "0.2",
        },
        dashboard_port=dashboard_port,
    )
    settings = settings_module.load(
        {"HELPLINE_ENV": "development", "HELPLINE_DATABASE_URL": server.database_url}
    )
    db = Database(settings.database_url, settings.encryption_keys, settings.pseudonym_key)
    operator = service.Actor.operator("test")
    with db.session() as session:
        accounts.add_organisation(session, "Helpline", actor=operator)
        accounts.add_organisation(session, "Other NGO", actor=operator)
        user, _ = accounts.add_user(
            session, "ana@helpline.org", organisation_name="Helpline", role="supervisor",
            password=PASSWORD, actor=operator, two_factor=True,
        )  # fmt: skip
        accounts.confirm_totp(session, user, pyotp.TOTP(user.totp_secret).now())
        secret = user.totp_secret
        accounts.add_user(
            session, "eve@other.org", organisation_name="Other NGO", role="supervisor",
            password=PASSWORD, actor=operator, two_factor=False,
        )  # fmt: skip
    yield server, f"http://127.0.0.1:{dashboard_port}", telegram, db, secret
    stop()
    db.dispose()
    telegram.close()


def send_telegram(server, text: str) -> int:
    update = {
        "update_id": int(time.time() * 1000) % 10**9,
        "message": {
            "message_id": int(time.time()) % 10**6,
            "date": int(time.time()),
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": CHAT, "is_bot": False, "first_name": "W"},
            "text": text,
        },
    }
    request = urllib.request.Request(
        f"{server.base}/webhooks/telegram/webhook",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status


def axe_problems(page) -> list[str]:
    # Evaluated through the DevTools protocol: a <script> tag would be refused by our own
    # Content-Security-Policy, which the test keeps on.
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;window.axe = axe; true")
    result = page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def sign_in(page, base, email, code=""):
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign in").click()


def test_caseworker_sees_a_burmese_emergency_live_replies_in_burmese_and_it_is_delivered(
    deployment,
):
    chromium = find_chromium()
    from playwright.sync_api import expect, sync_playwright

    server, base, telegram, db, secret = deployment
    problems: list[str] = []
    accessibility: dict[str, list[str]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            page.goto(f"{base}/login")
            accessibility["sign-in"] = axe_problems(page)
            sign_in(page, base, "ana@helpline.org", pyotp.TOTP(secret).now())
            expect(page.get_by_role("heading", name="Cases")).to_be_visible()
            accessibility["queue"] = axe_problems(page)

            # The worker writes; the queue page is not reloaded.
            assert send_telegram(server, EMERGENCY_MY) == 200
            deadline = time.monotonic() + 120
            reference = None
            while reference is None and time.monotonic() < deadline:
                with db.session() as session:
                    case = session.query(Case).filter(Case.channel == "telegram").first()
                    reference = case.reference if case is not None else None
                    urgency = case.urgency if case is not None else None
                time.sleep(0.2)
            assert reference, "no case was opened for the worker's emergency"
            assert urgency == "immediate"
            seen_at = time.monotonic()
            first_row = page.locator("tr.row").first
            expect(first_row).to_contain_text(reference, timeout=10_000)
            live_seconds = time.monotonic() - seen_at
            expect(first_row).to_contain_text("immediate")
            expect(page.locator("#alerts")).to_contain_text(reference)
            expect(page.locator("#live-region")).to_contain_text(reference)
            page.screenshot(path=str(DOCS / "dashboard-queue.png"), full_page=False)

            # Open it with the keyboard: j selects the first row, o opens it.
            page.keyboard.press("j")
            page.keyboard.press("o")
            expect(page.get_by_role("heading", name=reference)).to_be_visible()
            expect(page.locator("#transcript")).to_contain_text("အလုပ်ရှင်က")
            # The worker's message with its intent and the classifier's confidence.
            expect(page.locator("#transcript .msg.in .meta").first).to_contain_text(
                re.compile(r"[a-z_]+ \(\d\.\d\d\)")
            )
            accessibility["case"] = axe_problems(page)

            # A canned reply in Burmese, with its English meaning beside it.
            page.locator("a.use-template").first.click()
            reply_box = page.get_by_label("Reply", exact=True)
            draft = reply_box.input_value()
            assert reference in draft and any("\u1000" <= ch <= "\u109f" for ch in draft)
            expect(page.locator("#sms-count")).to_contain_text("UCS-2")
            page.get_by_role("button", name="Send").click()
            expect(page.locator(".notice")).to_be_visible()
            expect(page.locator("#transcript")).to_contain_text(draft[:20])
            # Its delivery state changes without a reload: queued, then sent.
            expect(page.locator("#transcript .delivery").last).to_contain_text(
                "sent", timeout=30_000
            )
            page.screenshot(path=str(DOCS / "dashboard-case.png"), full_page=True)

            # The worker's side got it: Telegram's sendMessage, in Burmese, with the reference.
            texts = [m.get("text", "") for m in telegram.wait_for("sendMessage", 1)]
            deadline = time.monotonic() + 30
            while draft not in texts and time.monotonic() < deadline:
                time.sleep(0.3)
                texts = [m.get("text", "") for m in telegram.sent("sendMessage")]
            assert draft in texts
            assert {str(m.get("chat_id")) for m in telegram.sent("sendMessage")} == {str(CHAT)}

            # A form without its CSRF token is refused.
            forged = page.request.post(
                f"{base}/cases/{reference}/note", form={"note": "forged"}, max_redirects=0
            )
            assert forged.status == 403

            # Another organisation: 404 on the case's URL, and no row in its queue.
            other = browser.new_context().new_page()
            sign_in(other, base, "eve@other.org")
            expect(other.get_by_role("heading", name="Cases")).to_be_visible()
            assert reference not in other.content()
            response = other.goto(f"{base}/cases/{reference}")
            assert response.status == 404
            accessibility["not-found"] = axe_problems(other)
        finally:
            browser.close()
    assert not problems, problems
    assert all(not found for found in accessibility.values()), accessibility
    with db.session() as session:
        case = session.query(Case).filter(Case.reference == reference).one()
        replies = [
            (m.author, m.status)
            for m in session.query(Message).filter(
                Message.case_id == case.id, Message.author == "ana@helpline.org"
            )
        ]
    assert replies == [("ana@helpline.org", "sent")]
    print(f"live: the case row appeared {live_seconds:.1f} s after the case was stored")
