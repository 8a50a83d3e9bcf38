"""The caseworkers' dashboard: a Starlette application of its own (``helpline dashboard``).

Server-rendered pages (Jinja2) that work without JavaScript for reading and replying; htmx
(vendored in ``static/``) and ``static/dashboard.js`` add partial updates, live updates over
server-sent events and keyboard shortcuts. Every case query goes through the case service
(``bot/store/cases.py``) with the signed-in person as the actor.

Security: server-side sessions (``bot/store/accounts.py``) in an HttpOnly, SameSite=Strict
cookie (Secure outside development); a CSRF token on every state-changing request (the
session's, or a double-submit cookie before sign-in); a strict Content-Security-Policy without
inline script; ``frame-ancestors 'none'``; nothing cached (``no-store``) but the static files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

import anyio
import segno
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import and_, func, select
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot import sms, taxonomy
from bot.dashboard import i18n
from bot.dashboard.canned import CannedReplies
from bot.dashboard.labels import LABELS
from bot.store import accounts
from bot.store import cases as service
from bot.store import repository as repo
from bot.store.database import Database
from bot.store.models import (
    Attachment,
    Case,
    CasePresence,
    Message,
    Organisation,
    RoutingRule,
    User,
    utcnow,
)

logger = logging.getLogger("helpline.dashboard")

HERE = Path(__file__).resolve().parent
COOKIE = "helpline_session"
PRE_CSRF_COOKIE = "helpline_csrf"  # double-submit token for the forms shown before sign-in
FORM_LIMIT = 64 * 1024
PAGE_SIZE = 50
PRESENCE = dt.timedelta(seconds=45)  # a page open that long without a heartbeat has gone
# Shown in the page (photos, voice notes); anything else is downloaded, never rendered.
INLINE_TYPES = ("image/jpeg", "image/png", "audio/ogg", "audio/mpeg", "audio/amr", "audio/mp4")
LIVE_POLL = 1.0  # seconds between two looks at the database for a live page
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclasses.dataclass
class Config:
    development: bool
    require_two_factor: bool
    search_key: bytes  # keyed hashes of sign-in attempts
    locales_dir: Path | None = None
    # A live stream ends after this long and the browser reconnects (with Last-Event-ID): no
    # connection holds a worker thread for ever, and a proxy's idle timeout never cuts one.
    live_seconds: float = 300.0


@dataclasses.dataclass
class Who:
    """The signed-in person of a request."""

    web: object  # WebSession
    user: User
    actor: service.Actor
    token: str


class Dashboard:
    def __init__(self, database: Database, config: Config) -> None:
        self.db = database
        self.config = config
        self.translations = i18n.load()
        self.canned = CannedReplies(config.locales_dir) if config.locales_dir else CannedReplies()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
        )
        self.templates.globals.update(
            taxonomy=taxonomy, language_names=taxonomy.LANGUAGE_NAMES, sms=sms
        )

    # --- plumbing --------------------------------------------------------------------------
    def language(self, request: Request, who: Who | None) -> str:
        chosen = (who.web.language if who else None) or request.cookies.get("helpline_lang")
        return chosen if chosen in self.translations else i18n.SOURCE

    def render(self, request, name, who=None, status=200, **context) -> HTMLResponse:
        lang = self.language(request, who)
        translations = self.translations[lang]
        template = self.templates.get_template(name)

        def gettext(message: str, **values) -> str:
            text = translations.gettext(message)
            return text % values if values else text

        def label(name) -> str:
            return gettext(LABELS.get(name, name)) if name else "-"

        html = template.render(
            _=gettext,
            label=label,
            lang=lang,
            languages=[(c, i18n.NAMES.get(c, c)) for c in self.translations],
            who=who,
            request=request,
            csrf=(who.web.csrf_token if who else self.pre_csrf(request)),
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if who is None and not request.cookies.get(PRE_CSRF_COOKIE):
            self.set_cookie(response, PRE_CSRF_COOKIE, request.state.pre_csrf, max_age=None)
        return response

    def pre_csrf(self, request: Request) -> str:
        token = request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.state.pre_csrf = token
        return token

    def set_cookie(self, response: Response, name: str, value: str, max_age=None) -> None:
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="strict",
            secure=not self.config.development, path="/",
        )  # fmt: skip

    async def form(self, request: Request) -> FormData:
        length = int(request.headers.get("content-length") or 0)
        if length > FORM_LIMIT:
            raise HTTPException(413, "too large")
        return await request.form(max_files=0, max_fields=50, max_part_size=FORM_LIMIT)

    def check_csrf(self, request: Request, form: FormData, who: Who | None) -> None:
        sent = request.headers.get("x-csrf-token") or form.get("csrf") or ""
        expected = who.web.csrf_token if who else request.cookies.get(PRE_CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(str(sent), expected):
            raise HTTPException(403, "the form has expired: reload the page and try again")

    def who(self, request: Request, *, verified: bool = True) -> Who | None:
        token = request.cookies.get(COOKIE)
        with self.db.session() as session:
            web = accounts.current_session(session, token)
            if web is None:
                return None
            if verified and not web.verified:
                return None
            user = session.get(User, web.user_id)
            if user is None or user.disabled_at is not None or user.membership is None:
                return None
            _ = user.membership.organisation  # loaded while the session is open
            return Who(web=web, user=user, actor=service.Actor.of(user), token=token)

    def require(self, request: Request) -> Who:
        who = self.who(request)
        if who is None:
            target = request.url.path if request.method == "GET" else "/"
            raise HTTPException(303, headers={"location": "/login?" + urlencode({"next": target})})
        return who

    # --- sign-in ---------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        self.check_csrf(request, form, None)
        address = request.client.host if request.client else "-"

        def attempt():
            with self.db.session() as session:
                try:
                    user = accounts.sign_in(
                        session,
                        email=str(form.get("email", "")),
                        password=str(form.get("password", "")),
                        code=str(form.get("code", "")),
                        address=address,
                        key=self.config.search_key,
                    )
                except accounts.SignInFailed as exc:
                    return None, exc.retry_after, False
                enrol = self.config.require_two_factor and not user.totp_enabled
                token = accounts.open_session(session, user, verified=not enrol)
                service.audit(session, service.Actor.of(user), "signed_in")
                return token, 0, enrol

        token, wait, enrol = await anyio.to_thread.run_sync(attempt)
        if token is None:
            await asyncio.sleep(0.5)  # every failure costs the caller time, whatever was wrong
            return self.render(
                request, "login.html", status=401, failed=True, retry_after=wait,
                next=_safe_next(str(form.get("next", ""))),
            )  # fmt: skip
        response = RedirectResponse(
            "/enrol" if enrol else _safe_next(str(form.get("next", ""))), status_code=303
        )
        self.set_cookie(response, COOKIE, token)
        return response

    async def logout(self, request: Request) -> Response:
        who = self.who(request, verified=False)
        form = await self.form(request)
        if who is not None:
            self.check_csrf(request, form, who)
            with self.db.session() as session:
                accounts.close_session(session, who.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def enrol_page(self, request: Request) -> Response:
        who = self.who(request, verified=False)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        with self.db.session() as session:
            user = session.get(User, who.user.id)
            if user.totp_enabled:
                return RedirectResponse("/", status_code=303)
            uri = accounts.totp_uri(user) if user.totp_secret else accounts.start_totp(user)
        qr = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
        secret = uri.split("secret=")[1].split("&")[0]
        return self.render(request, "enrol.html", who=who, qr=qr, secret=secret)

    async def enrol(self, request: Request) -> Response:
        who = self.who(request, verified=False)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        form = await self.form(request)
        self.check_csrf(request, form, who)
        with self.db.session() as session:
            user = session.get(User, who.user.id)
            try:
                codes = accounts.confirm_totp(session, user, str(form.get("code", "")))
            except repo.StoreError as exc:
                return self.render(request, "enrol.html", who=who, error=str(exc), status=400,
                                   qr=segno.make(accounts.totp_uri(user)).svg_data_uri(scale=5),
                                   secret=user.totp_secret)  # fmt: skip
            web = accounts.current_session(session, who.token)
            web.verified = True
            service.audit(session, who.actor, "two_factor_enrolled")
        return self.render(request, "recovery.html", who=who, codes=codes)

    async def set_language(self, request: Request) -> Response:
        form = await self.form(request)
        who = self.who(request, verified=False)
        self.check_csrf(request, form, who)
        lang = str(form.get("lang", ""))
        if lang not in self.translations:
            raise HTTPException(400, "unknown language")
        back = _safe_next(str(form.get("next", "")))
        response = RedirectResponse(back, status_code=303)
        if who is not None:
            with self.db.session() as session:
                web = accounts.current_session(session, who.token)
                web.language = lang
                session.get(User, who.user.id).language = lang
        self.set_cookie(response, "helpline_lang", lang, max_age=365 * 86400)
        return response

    # --- the queue -------------------------------------------------------------------------
    def filters(self, request: Request, who: Who) -> service.Filters:
        q = request.query_params
        return service.Filters(
            status=q.get("status") or "open",
            urgency=_choice(q.get("urgency"), taxonomy.URGENCIES),
            language=_choice(q.get("language"), taxonomy.LANGUAGE_NAMES),
            country=_choice((q.get("country") or "").upper(), taxonomy.COUNTRIES),
            category=_choice(q.get("category"), taxonomy.CASE_CATEGORIES),
            assigned=_choice(q.get("assigned"), ("me", "none")),
            overdue=q.get("overdue") == "1",
            search=(q.get("q") or "")[:100] or None,
            simulated=q.get("simulated") == "1"
            and self.config.development
            and who.actor.can("simulated"),
        )

    def queue_rows(self, request: Request, who: Who) -> dict:
        filters = self.filters(request, who)
        page = max(1, int(request.query_params.get("page") or 1)) if (
            (request.query_params.get("page") or "1").isdigit()
        ) else 1
        with self.db.session() as session:
            try:
                rows = service.queue(
                    session, who.actor, filters, limit=PAGE_SIZE + 1,
                    offset=(page - 1) * PAGE_SIZE,
                )  # fmt: skip
            except repo.StoreError as exc:
                raise HTTPException(400, str(exc)) from exc
            org = session.execute(
                select(Organisation).where(Organisation.name == who.actor.organisation)
            ).scalar()
            minutes = service.response_minutes(org)
            now = utcnow()
            cases = [_queue_row(c, minutes, now) for c in rows[:PAGE_SIZE]]
            cursor = self.queue_cursor(session, who, filters.simulated)
        return {
            "cursor": _format_cursor(cursor),
            "cases": cases,
            "filters": filters,
            "page": page,
            "more": len(rows) > PAGE_SIZE,
            "query": {k: v for k, v in request.query_params.items() if k != "page"},
        }

    async def queue(self, request: Request) -> Response:
        who = self.require(request)
        context = await anyio.to_thread.run_sync(self.queue_rows, request, who)
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "queue-rows":
            return self.render(request, "_queue_rows.html", who=who, **context)
        return self.render(
            request, "queue.html", who=who, development=self.config.development, **context
        )

    # --- a case ----------------------------------------------------------------------------
    def case_context(
        self, who: Who, reference: str, template: str | None, *, record: bool = True
    ) -> dict | None:
        """What a case page shows; ``record``: a view for the audit trail (not for the live
        refresh of its transcript)."""
        with self.db.session() as session:
            try:
                case = (service.view if record else service.get)(session, who.actor, reference)
            except service.NotFound:
                return None  # the block ends normally: the audited refusal is kept
            messages = service.transcript(session, case)
            hidden = service.masked(session, who.actor, case)
            intake = [
                (field, service.MASK if field in hidden else getattr(case, field))
                for field in repo.INTAKE_FIELDS
            ]
            session.merge(CasePresence(case_id=case.id, user_id=who.user.id, seen_at=utcnow()))
            viewers = list(
                session.execute(
                    select(User.email)
                    .join(CasePresence, CasePresence.user_id == User.id)
                    .where(
                        CasePresence.case_id == case.id,
                        CasePresence.user_id != who.user.id,
                        CasePresence.seen_at > utcnow() - PRESENCE,
                    )
                ).scalars()
            )
            values = {"case_ref": case.reference, "organisation": case.organisation or ""}
            canned = self.canned.choices(case.language, **values)
            chosen = next((c["text"] for c in canned if c["key"] == template), "")
            trail = (
                service.events(session, who.actor, case) if who.actor.can("audit") else []
            )
            minutes = service.response_minutes(service._organisation(session, who.actor))
            return {
                "case": case,
                "messages": [_message_row(m) for m in messages],
                "intake": intake,
                "masked": hidden,
                "viewers": viewers,
                "canned": canned,
                "draft": chosen,
                "seen_reply_id": service.last_reply_id(session, case),
                "colleagues": service.colleagues(session, who.actor),
                "transitions": [  # in the workflow's order: the first is the usual next step
                    s for s in taxonomy.STATUSES if s in repo.TRANSITIONS[case.status]
                ],
                "trail": trail,
                "can_ask_reveal": bool(hidden) and who.actor.role == "supervisor",
                "overdue": _queue_row(case, minutes, utcnow())["overdue"],
                "live_key": _case_key(session, case),
            }

    async def case_page(self, request: Request) -> Response:
        who = self.require(request)
        reference = request.path_params["reference"]
        template = request.query_params.get("template")
        partial = bool(
            request.headers.get("hx-request") and request.headers.get("hx-target") == "transcript"
        )
        context = await anyio.to_thread.run_sync(
            functools.partial(self.case_context, who, reference, template, record=not partial)
        )
        if context is None:
            raise HTTPException(404, "no such case")
        context.update(
            notice=request.query_params.get("notice"),
            error=request.query_params.get("error"),
            gsm7=sms.GSM7_BASIC,
            gsm7_extension=sms.GSM7_EXTENSION,
        )
        if partial:
            return self.render(request, "_transcript.html", who=who, **context)
        return self.render(request, "case.html", who=who, **context)

    async def case_action(self, request: Request) -> Response:
        """Every state-changing form of a case page: reply, assign, status, urgency, classify,
        note, release, reveal, legal hold. After it, back to the case page (post/redirect/get)."""
        who = self.require(request)
        form = await self.form(request)
        self.check_csrf(request, form, who)
        reference, action = request.path_params["reference"], request.path_params["action"]

        def act() -> tuple[str, str]:
            with self.db.session() as session:
                try:
                    return change(session)
                except service.NotFound:
                    return "not_found", ""  # the block ends normally: the refusal is kept

        def change(session) -> tuple[str, str]:
            actor = who.actor
            if action == "reply":
                seen = str(form.get("seen_reply_id", ""))
                seen_id = int(seen) if seen.isdigit() else 0
                service.reply(
                    session, actor, reference, str(form.get("text", "")),
                    seen_reply_id=None if form.get("confirm") else seen_id,
                )  # fmt: skip
                return "notice", "reply_queued"
            if action == "assign":
                service.assign(session, actor, reference, str(form.get("to", "")) or None)
            elif action == "status":
                service.set_status(session, actor, reference, str(form.get("status", "")))
            elif action == "urgency":
                service.set_urgency(session, actor, reference, str(form.get("urgency", "")))
            elif action == "classify":
                service.classify(
                    session, actor, reference, str(form.get("category", "")),
                    [str(i) for i in form.getlist("indicators")],
                )  # fmt: skip
            elif action == "note":
                service.note(session, actor, reference, str(form.get("note", "")))
            elif action == "release":
                service.release(session, actor, reference)
            elif action == "hold":
                service.set_legal_hold(session, actor, reference, form.get("hold") == "on")
            elif action == "reveal":
                service.request_reveal(session, actor, reference, str(form.get("reason", "")))
                return "notice", "reveal_requested"
            else:
                raise HTTPException(404)
            return "notice", "saved"

        try:
            key, value = await anyio.to_thread.run_sync(act)
        except service.Conflict:
            draft = str(form.get("text", ""))[:1600]
            return self.render(
                request, "conflict.html", who=who, reference=reference, draft=draft,
                status=409,
            )  # fmt: skip
        except (service.Forbidden, repo.StoreError) as exc:
            key, value = "error", str(exc)[:200]
        if key == "not_found":
            raise HTTPException(404, "no such case")
        url = f"/cases/{reference}?" + urlencode({key: value})
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    async def attachment(self, request: Request) -> Response:
        who = self.require(request)
        reference = request.path_params["reference"]
        attachment_id = request.path_params["attachment_id"]

        def load():
            with self.db.session() as session:
                try:
                    case = service.get(session, who.actor, reference, purpose="attachment")
                except service.NotFound:
                    return None
                found = session.execute(
                    select(Attachment)
                    .join(Message, Message.id == Attachment.message_id)
                    .where(Attachment.id == attachment_id, Message.case_id == case.id)
                ).scalar()
                if found is None or found.data is None:
                    return None
                repo._event(session, case, "download", who.actor.label, {"attachment": found.id})
                return found.content_type, found.data

        found = await anyio.to_thread.run_sync(load)
        if found is None:
            raise HTTPException(404, "no such file")
        content_type, data = found
        inline = content_type.split(";")[0] in INLINE_TYPES
        return Response(
            data,
            media_type=content_type if inline else "application/octet-stream",
            headers={
                "content-disposition": ("inline" if inline else "attachment")
                + f'; filename="attachment-{attachment_id}"',
                "content-security-policy": "default-src 'none'; sandbox",
            },
        )

    # --- live ------------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        """Server-sent events for the queue (``/live``) or one case (``/live?case=HX-...``):
        what changed since the page was drawn, looked up in the database every second (so it
        works across processes)."""
        who = self.require(request)
        reference = request.query_params.get("case")
        # What the page showed when it was drawn: a change between drawing it and this stream
        # opening is sent at once, not lost.
        seen = (request.headers.get("last-event-id") or request.query_params.get("seen") or "")
        seen = seen[:64]
        simulated = (
            request.query_params.get("simulated") == "1"
            and self.config.development
            and who.actor.can("simulated")
        )

        def look(state: dict) -> list[dict]:
            with self.db.session() as session:
                if reference:
                    try:
                        case = service.get(session, who.actor, reference, purpose="live")
                    except service.NotFound:
                        return [{"event": "gone"}]
                    session.merge(
                        CasePresence(case_id=case.id, user_id=who.user.id, seen_at=utcnow())
                    )
                    key = _case_key(session, case)
                    if key != state.setdefault("key", seen):
                        state["key"] = key
                        return [{"event": "case", "reference": case.reference}]
                    return []
                return self._queue_changes(session, who, state, simulated)

        async def stream():
            state: dict = {} if reference else _parse_cursor(seen)
            sent_id = seen
            ends = time.monotonic() + self.config.live_seconds
            yield "retry: 2000\n\n"
            while time.monotonic() < ends:
                if await request.is_disconnected():
                    return
                for change in await anyio.to_thread.run_sync(look, state):
                    yield f"event: {change['event']}\ndata: {json.dumps(change)}\n\n"
                    if change["event"] == "gone":
                        return
                # Where this page now stands: the browser sends it back as Last-Event-ID when
                # it reconnects, so nothing is announced twice and nothing is missed.
                current = state.get("key") if reference else _format_cursor(state)
                if current and current != sent_id:
                    yield f"id: {current}\n\n"
                    sent_id = current
                await asyncio.sleep(LIVE_POLL)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    def queue_cursor(self, session, who: Who, simulated: bool) -> dict:
        """Where the queue stands: the newest case and message, and how many replies on visible
        cases failed or are held (what a live queue page compares against)."""
        visible = and_(service.visible(who.actor), Case.simulated.is_(simulated))
        return {
            "case": session.execute(select(func.max(Case.id))).scalar() or 0,
            "message": session.execute(select(func.max(Message.id))).scalar() or 0,
            "failed": session.execute(
                select(func.count())
                .select_from(Message)
                .join(Case, Case.id == Message.case_id)
                .where(visible, Message.status.in_(("failed", "held")))
            ).scalar(),
        }

    def _queue_changes(self, session, who: Who, state: dict, simulated: bool) -> list[dict]:
        visible = and_(service.visible(who.actor), Case.simulated.is_(simulated))
        now = self.queue_cursor(session, who, simulated)
        last_case, last_message, failed = now["case"], now["message"], now["failed"]
        if not state:
            state.update(case=last_case, message=last_message, failed=failed)
            return []
        changes = []
        if last_case > state["case"]:
            for reference, urgency in session.execute(
                select(Case.reference, Case.urgency)
                .where(Case.id > state["case"], visible)
                .order_by(Case.id)
                .limit(20)
            ).all():
                changes.append({"event": "new_case", "reference": reference, "urgency": urgency})
        if last_message > state["message"]:
            for reference, urgency in session.execute(
                select(Case.reference, Case.urgency)
                .join(Message, Message.case_id == Case.id)
                .where(
                    Message.id > state["message"],
                    Message.direction == "in",
                    visible,
                )
                .distinct()
                .limit(20)
            ).all():
                changes.append({"event": "new_message", "reference": reference,
                                "urgency": urgency})  # fmt: skip
        if failed > state["failed"]:
            changes.append({"event": "delivery_failed"})
        state.update(case=last_case, message=last_message, failed=failed)
        return changes

    # --- admin -----------------------------------------------------------------------------
    async def admin_page(self, request: Request) -> Response:
        who = self.require(request)
        if not who.actor.can("administer"):
            raise HTTPException(404)

        def load():
            with self.db.session() as session:
                return {
                    "counts": service.counts_by_organisation(session, who.actor),
                    "organisations": list(
                        session.execute(select(Organisation).order_by(Organisation.id)).scalars()
                    ),
                    "rules": [
                        (r.id, r.country, r.language, r.category, r.organisation.name)
                        for r in session.execute(
                            select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id)
                        ).scalars()
                    ],
                    "reveals": [
                        (r.id, ref, r.organisation, r.requested_by, r.reason,
                         r.created_at.strftime("%Y-%m-%d %H:%M"))
                        for r, ref in service.pending_reveals(session, who.actor)
                    ],  # fmt: skip
                    "users": [
                        (u.email, u.membership.role if u.membership else "-",
                         u.membership.organisation.name if u.membership else "-",
                         u.totp_enabled, u.disabled_at is not None)
                        for u in session.execute(select(User).order_by(User.email)).scalars()
                    ],  # fmt: skip
                }

        context = await anyio.to_thread.run_sync(load)
        return self.render(request, "admin.html", who=who, **context)

    async def admin_form(self, request: Request) -> tuple[Who, FormData]:
        """An admin's form, checked: signed in, an admin (else 404), its CSRF token."""
        who = self.require(request)
        if not who.actor.can("administer"):
            raise HTTPException(404)
        form = await self.form(request)
        self.check_csrf(request, form, who)
        return who, form

    async def admin_rule(self, request: Request) -> Response:
        who, form = await self.admin_form(request)

        def change():
            with self.db.session() as session:
                if form.get("delete"):
                    rule = session.get(RoutingRule, int(str(form.get("delete"))))
                    if rule is not None:
                        session.delete(rule)
                        service.audit(session, who.actor, "routing_rule_deleted", rule=rule.id)
                    return
                org = accounts.organisation(session, str(form.get("organisation", "")))
                rule = RoutingRule(
                    country=_choice(str(form.get("country", "")).upper(), taxonomy.COUNTRIES),
                    language=_choice(str(form.get("language", "")), taxonomy.LANGUAGE_NAMES),
                    category=_choice(str(form.get("category", "")), taxonomy.CASE_CATEGORIES),
                    organisation=org,
                    position=int(str(form.get("position") or 0) or 0),
                )
                session.add(rule)
                session.flush()
                service.audit(session, who.actor, "routing_rule_added", rule=rule.id)

        try:
            await anyio.to_thread.run_sync(change)
        except (repo.StoreError, ValueError) as exc:
            return RedirectResponse("/admin?" + urlencode({"error": str(exc)[:200]}), 303)
        return RedirectResponse("/admin", status_code=303)

    async def admin_reveal(self, request: Request) -> Response:
        who, form = await self.admin_form(request)
        decision = str(form.get("decision", ""))
        if decision not in ("approve", "refuse"):
            raise HTTPException(400, "approve or refuse")

        def decide():
            with self.db.session() as session:
                service.decide_reveal(session, who.actor, request.path_params["request_id"],
                                      decision == "approve")  # fmt: skip

        try:
            await anyio.to_thread.run_sync(decide)
        except service.NotFound as exc:
            raise HTTPException(404) from exc
        return RedirectResponse("/admin", status_code=303)

    async def export(self, request: Request) -> Response:
        """The filtered queue as CSV, without personal data, for supervisors (audited)."""
        who = self.require(request)
        if not who.actor.can("audit"):
            raise HTTPException(404)

        def rows():
            with self.db.session() as session:
                return service.export_rows(session, who.actor, self.filters(request, who))

        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=service.EXPORT_COLUMNS)
        writer.writeheader()
        for row in await anyio.to_thread.run_sync(rows):
            writer.writerow({k: _csv_safe(v) for k, v in row.items()})
        return Response(
            buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="cases.csv"'},
        )

    async def user_audit(self, request: Request) -> Response:
        who = self.require(request)
        if not who.actor.can("audit"):
            raise HTTPException(404)
        email = (request.query_params.get("user") or "").strip().lower()

        def load():
            with self.db.session() as session:
                people = service.colleagues(session, who.actor)
                rows = service.user_trail(session, who.actor, email) if email else []
                return people, rows

        try:
            people, rows = await anyio.to_thread.run_sync(load)
        except service.NotFound as exc:
            raise HTTPException(404) from exc
        return self.render(request, "audit.html", who=who, people=people, email=email, rows=rows)

    async def admin_people(self, request: Request) -> Response:
        """The admin adds an organisation or a user, or disables a user (all audited). A new
        user signs in with the password the admin gave and, where two-factor sign-in is
        required, enrols their authenticator at that first sign-in."""
        who, form = await self.admin_form(request)
        what = request.path_params["what"]

        def change() -> str:
            with self.db.session() as session:
                if what == "orgs":
                    org = accounts.add_organisation(session, str(form.get("name", "")),
                                                    actor=who.actor)  # fmt: skip
                    return f"added {org.name}"
                if what == "users":
                    user, _ = accounts.add_user(
                        session, str(form.get("email", "")),
                        organisation_name=str(form.get("organisation", "")),
                        role=str(form.get("role", "")), password=str(form.get("password", "")),
                        actor=who.actor, two_factor=False,
                    )  # fmt: skip
                    return f"added {user.email}"
                if what == "disable":
                    email = str(form.get("email", ""))
                    if email.lower() == who.user.email:
                        raise repo.StoreError("you cannot disable yourself")
                    user = accounts.disable_user(session, email, actor=who.actor)
                    return f"disabled {user.email}"
                raise HTTPException(404)

        try:
            done = await anyio.to_thread.run_sync(change)
        except repo.StoreError as exc:
            return RedirectResponse("/admin?" + urlencode({"error": str(exc)[:200]}), 303)
        return RedirectResponse("/admin?" + urlencode({"notice": done}), status_code=303)

    async def account_page(self, request: Request) -> Response:
        who = self.require(request)
        return self.render(request, "account.html", who=who,
                           error=request.query_params.get("error"))  # fmt: skip

    async def change_password(self, request: Request) -> Response:
        who = self.require(request)
        form = await self.form(request)
        self.check_csrf(request, form, who)
        new = str(form.get("new_password", ""))
        if new != str(form.get("new_password_again", "")):
            return RedirectResponse("/account?error=" + "the+two+new+passwords+differ", 303)

        def change():
            with self.db.session() as session:
                user = session.get(User, who.user.id)
                accounts.change_password(session, user, str(form.get("password", "")), new)

        try:
            await anyio.to_thread.run_sync(change)
        except repo.StoreError as exc:
            return RedirectResponse("/account?" + urlencode({"error": str(exc)[:200]}), 303)
        response = RedirectResponse("/login", status_code=303)  # every session ended
        response.delete_cookie(COOKIE, path="/")
        return response

    async def health(self, request: Request) -> Response:
        def ping() -> bool:
            with self.db.engine.connect() as connection:
                return connection.exec_driver_sql("SELECT 1").scalar() == 1

        try:
            ok = await anyio.to_thread.run_sync(ping)
        except Exception:  # noqa: BLE001 - a health check reports, it does not raise
            ok = False
        return PlainTextResponse("ok" if ok else "database unavailable", 200 if ok else 503)


def _case_key(session, case: Case) -> str:
    """A short digest of what a case's transcript shows: its messages and the delivery state
    of its latest replies. A live case page refreshes when it changes."""
    count, last = session.execute(
        select(func.count(), func.max(Message.id)).where(Message.case_id == case.id)
    ).one()
    states = session.execute(
        select(Message.id, Message.status, Message.channel)
        .where(Message.case_id == case.id, Message.direction == "out")
        .order_by(Message.id.desc())
        .limit(20)
    ).all()
    text = repr((count, last, [tuple(r) for r in states]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parse_cursor(seen: str) -> dict:
    """A queue page's cursor (``case.message.failed``), or {} when there is none."""
    parts = seen.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return dict(zip(("case", "message", "failed"), map(int, parts), strict=True))
    return {}


def _format_cursor(state: dict) -> str:
    if not state:
        return ""
    return f"{state['case']}.{state['message']}.{state['failed']}"


def _csv_safe(value) -> str:
    """No spreadsheet formulas from a cell (=, +, -, @ first)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _choice(value, allowed):
    return value if value and value in allowed else None


def _safe_next(value: str | None) -> str:
    """Only a path of this site (no scheme, no //host): no open redirect after sign-in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _age(since, now) -> str:
    if since is None:
        return "-"
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.timezone.utc)
    minutes = int((now - since).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


def _queue_row(case: Case, minutes: dict[str, int], now) -> dict:
    waiting = case.awaiting_since
    if waiting is not None and waiting.tzinfo is None:
        waiting = waiting.replace(tzinfo=dt.timezone.utc)
    limit = minutes.get(case.urgency)
    due = waiting + dt.timedelta(minutes=limit) if (waiting and limit) else None
    state = "answered" if waiting is None else ("overdue" if due and now > due else "waiting")
    return {
        "reference": case.reference,
        "urgency": case.urgency,
        "danger_kind": case.danger_kind,
        "category": case.category,
        "language": case.language,
        "country": case.country,
        "channel": case.channel,
        "status": case.status,
        "assigned_to": case.assigned_to,
        "age": _age(case.created_at, now),
        "last_message": _age(case.last_inbound_at, now),
        "response": state,
        "due_in": _age(now, due) if due and state == "waiting" else None,
        "overdue": state == "overdue",
    }


DELIVERY = {
    ("held", "opted_out"): "held_stop",
    ("held", "twilio_63016"): "held_window",
}


def _message_row(message: Message) -> dict:
    delivery = None
    if message.direction == "out" and message.status:
        delivery = DELIVERY.get((message.status, message.error), message.status)
        if message.error == "twilio_63016" and message.channel == "sms":
            delivery = f"sms_{message.status}"  # moved to SMS: the WhatsApp window had closed
    return {
        "id": message.id,
        "at": message.created_at,
        "direction": message.direction,
        "author": message.author,
        "text": message.text,
        "language": message.language,
        "intent": message.intent,
        "confidence": message.confidence,
        "delivery": delivery,
        "channel": message.channel,
        "attachments": [
            (a.id, a.content_type, a.size, a.data is not None) for a in message.attachments
        ],
    }


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in (301, 302, 303, 307) and exc.headers:
        return RedirectResponse(exc.headers["location"], status_code=exc.status_code)
    dashboard: Dashboard = request.app.state.dashboard
    who = dashboard.who(request)
    return dashboard.render(
        request, "error.html", who=who, status=exc.status_code, code=exc.status_code,
        detail=exc.detail if exc.status_code != 404 else None,
    )  # fmt: skip


class SecurityHeaders:
    """Headers on every response: CSP, no framing, no sniffing, no referrer, nothing cached
    but the static files."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control" or static]  # fmt: skip
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"no-referrer",
                    b"cross-origin-opener-policy": b"same-origin",
                }
                if b"content-security-policy" not in names:
                    extra[b"content-security-policy"] = CSP.encode()
                if not static:
                    extra[b"cache-control"] = b"no-store"
                    extra[b"pragma"] = b"no-cache"
                headers += list(extra.items())
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(database: Database, config: Config) -> Starlette:
    dashboard = Dashboard(database, config)
    d = dashboard
    routes = [
        Route("/", d.queue),
        Route("/healthz", d.health),
        Route("/login", d.login_page, methods=["GET"]),
        Route("/login", d.login, methods=["POST"]),
        Route("/logout", d.logout, methods=["POST"]),
        Route("/enrol", d.enrol_page, methods=["GET"]),
        Route("/enrol", d.enrol, methods=["POST"]),
        Route("/language", d.set_language, methods=["POST"]),
        Route("/live", d.live),
        Route("/admin", d.admin_page),
        Route("/admin/rules", d.admin_rule, methods=["POST"]),
        Route("/admin/reveals/{request_id:int}", d.admin_reveal, methods=["POST"]),
        Route("/admin/{what}", d.admin_people, methods=["POST"]),
        Route("/account", d.account_page),
        Route("/account/password", d.change_password, methods=["POST"]),
        Route("/export.csv", d.export),
        Route("/audit", d.user_audit),
        Route("/cases/{reference}", d.case_page),
        Route("/cases/{reference}/attachments/{attachment_id:int}", d.attachment),
        Route("/cases/{reference}/{action}", d.case_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.dashboard = dashboard
    app.add_middleware(SecurityHeaders)
    return app


def from_settings(settings=None) -> Starlette:
    """The application for ``helpline dashboard`` (uvicorn's factory)."""
    from bot import logs
    from bot import settings as settings_module

    logs.configure("dashboard")
    from bot.store import open_database

    settings = settings or settings_module.load()
    database = open_database(settings)
    config = Config(
        development=settings.development,
        require_two_factor=not settings.development,
        search_key=settings.pseudonym_key.encode(),
    )
    return create_app(database, config)
