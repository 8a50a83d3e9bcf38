"""``helpline``: the command line of the migrant-worker helpline.

helpline train [--force]          train the Rasa model if the data or config changed
helpline parse [--model PATH]     messages on stdin, one JSON object per line on stdout
helpline run                      train if needed, then start the Rasa server
helpline locales check|summary    validate the locale packs
helpline cases list|show [REF]    the case store, for operators (also reply, assign, status,
                                  urgency, note, release, hold, unhold)
helpline orgs add NAME            an organisation (the first is the deploying one); also
                                  set-response NAME immediate=15 high=240 normal=2880
helpline users add EMAIL --org NAME --role ROLE   a dashboard account (also disable, reset)
helpline dashboard                the caseworkers' dashboard alone (make run starts it too)
helpline db upgrade               bring the case store's schema up to date
helpline keygen                   a new key for HELPLINE_ENCRYPTION_KEY
helpline rekey                    re-encrypt everything under the newest key
helpline retention run [--apply]  delete what the retention rules say is due (dry run by default)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

# TensorFlow (imported by Rasa) prints start-up noise to stderr unless told not to.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import yaml

from bot import locale_packs
from bot.settings import SettingsError

logger = logging.getLogger("helpline")

ROOT = Path(__file__).resolve().parent.parent
MODEL_PREFIX = "helpline-"
# Our components that read the locale packs themselves; ``--locales`` is passed on to them.
_PACK_COMPONENTS = (
    "LanguageIdentifierComponent",
    "GazetteerEntityExtractor",
    "DangerDetectorComponent",
)


class CliError(Exception):
    """An error for the operator: printed as one line, exit status 2."""


def _training_files(packs: Iterable[locale_packs.LocalePack], data_dir: Path) -> list[Path]:
    files = [f for pack in packs for f in pack.nlu_files]
    if data_dir.is_dir():
        files += sorted(data_dir.rglob("*.yml"))
    return files


def _config_for(config_path: Path, locales_dir: Path) -> dict:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for component in config.get("pipeline") or []:
        if str(component.get("name", "")).endswith(_PACK_COMPONENTS):
            component["locales_dir"] = str(locales_dir)
    return config


def fingerprint(paths: Iterable[Path], config: dict) -> str:
    """A hash of everything training depends on: config, domain, data and our NLU code."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    code = sorted((ROOT / "nlu").rglob("*.py")) + [ROOT / "bot" / "locale_packs.py"]
    for path in sorted(set(paths)) + code:
        digest.update("/".join(path.parts[-3:]).encode())  # pack/kind/file, not the clone's path
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def training_inputs(
    packs: list[locale_packs.LocalePack],
    locales_dir: Path,
    config_path: Path,
    domain_path: Path,
    data_dir: Path,
) -> tuple[list[Path], dict, str]:
    """Training files, the config as trained, and the model's name: a hash of the config, the
    domain, the training data, every pack.yml, danger.yml and danger_examples.tsv, and our NLU
    code. Translations (``.po``) are not part of it: editing one never retrains."""
    files = _training_files(packs, data_dir)
    config = _config_for(config_path, Path(locales_dir).resolve())
    inputs = files + [domain_path] + [p.path / "pack.yml" for p in packs]
    lexicons = [p.path / name for p in packs for name in ("danger.yml", "danger_examples.tsv")]
    inputs += [path for path in lexicons if path.is_file()]
    return files, config, f"{MODEL_PREFIX}{fingerprint(inputs, config)}"


def latest_model(models_dir: Path) -> Path | None:
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


def train(
    *,
    locales_dir: Path = locale_packs.DEFAULT_LOCALES_DIR,
    config_path: Path = ROOT / "config.yml",
    domain_path: Path = ROOT / "domain.yml",
    data_dir: Path = ROOT / "nlu" / "data",
    models_dir: Path = ROOT / "models",
    force: bool = False,
) -> Path:
    """Train a model unless one for exactly these inputs exists; returns the model's path."""
    packs = locale_packs.discover(locales_dir)
    for pack in packs:
        problems = locale_packs.check(pack, minimums=False)
        if problems:
            raise CliError(f"locale pack {pack.code} has problems:\n  " + "\n  ".join(problems))
    files, config, name = training_inputs(packs, locales_dir, config_path, domain_path, data_dir)
    target = models_dir / f"{name}.tar.gz"
    if target.exists() and not force:
        print(f"model is up to date: {target}", file=sys.stderr)
        # The newest model is the one for the current data (a read-only models folder, as in a
        # container image, holds only that one).
        with contextlib.suppress(OSError):
            target.touch()
        return target

    print(
        f"training on {len(files)} files from {len(packs)} locale packs "
        f"({', '.join(p.code for p in packs)}); this takes 5 to 15 minutes on 2 cores...",
        file=sys.stderr,
    )
    from rasa.api import train as rasa_train

    # progress: Rasa logs each component as it starts and finishes training
    logging.getLogger("rasa.engine.training.hooks").setLevel(logging.INFO)

    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tmp:
        yaml.safe_dump(config, tmp, allow_unicode=True, sort_keys=False)
    try:
        path = rasa_train(
            domain=str(domain_path),
            config=tmp.name,
            training_files=[str(f) for f in files],
            output=str(models_dir),
            force_training=True,
            fixed_model_name=name,
        ).model
    finally:
        os.unlink(tmp.name)
    if not path or not Path(path).exists():
        raise CliError("training failed: see the messages above")
    print(f"model saved: {path}", file=sys.stderr)
    return Path(path)


class Parser:
    """Parses messages with a trained model, the same way the Rasa server does."""

    def __init__(self, model_path: Path) -> None:
        import asyncio

        from rasa.core.agent import Agent

        self._loop = asyncio.new_event_loop()
        self.agent = Agent.load(str(model_path))
        if not self.agent.is_ready():
            raise CliError(f"could not load model {model_path}")

    def parse(self, text: str) -> dict:
        if not text.strip():
            return {
                "text": text,
                "normalized_text": "",
                "language": None,
                "language_confidence": 0.0,
                "intent": None,
                "confidence": 0.0,
                "danger": 0.0,
                "danger_kind": None,
                "entities": [],
            }
        result = self._loop.run_until_complete(self.agent.parse_message(text))
        intent = result.get("intent") or {}
        if intent.get("name") == "nlu_fallback":
            # The server asks again below the fallback threshold; parse reports the classifier's
            # best taxonomy intent and its (low) confidence.
            ranking = [i for i in result.get("intent_ranking") or [] if i["name"] != "nlu_fallback"]
            intent = ranking[0] if ranking else {}
        return {
            "text": text,
            "normalized_text": result.get("text", text),
            "language": result.get("language"),
            "language_confidence": result.get("language_confidence", 0.0),
            "intent": intent.get("name"),
            "confidence": round(float(intent.get("confidence") or 0.0), 4),
            "danger": result.get("danger", 0.0),
            "danger_kind": result.get("danger_kind"),
            "entities": [
                {k: e[k] for k in ("entity", "value", "start", "end", "text") if k in e}
                for e in result.get("entities") or []
            ],
        }


def _decode(line: bytes) -> str:
    """A line of input as text; invalid UTF-8 becomes U+FFFD rather than an error."""
    return line.rstrip(b"\r\n").decode("utf-8", errors="replace")


def model_in_folder(model: Path, models_dir: Path) -> Path:
    """``model``, if it is a file inside ``models_dir``: a model archive runs code of its
    components when loaded, so none is loaded from anywhere else."""
    resolved, folder = model.resolve(), models_dir.resolve()
    if folder not in resolved.parents:
        raise CliError(
            f"{model} is not in the models folder {folder}: models are loaded only from there"
            " (--models-dir)"
        )
    return resolved


def cmd_parse(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else latest_model(Path(args.models_dir))
    if model is not None:
        model = model_in_folder(model, Path(args.models_dir))
    if model is None or not model.exists():
        raise CliError(
            f"no model found ({args.model or args.models_dir}); run `helpline train` first"
        )
    parser = Parser(model)
    out = sys.stdout
    for raw in sys.stdin.buffer:
        out.write(json.dumps(parser.parse(_decode(raw)), ensure_ascii=False) + "\n")
        out.flush()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    path = train(
        locales_dir=Path(args.locales),
        models_dir=Path(args.models_dir),
        force=args.force,
    )
    print(path)
    return 0


class Supervisor:
    """Keeps a child process (the action server) running while the helpline runs.

    When it exits while it should be running, it is started again after ``backoff`` seconds,
    doubled after each restart up to ``max_backoff`` (and back to ``backoff`` once a process has
    stayed up that long), with one log line per restart: the exit code, nothing else. A clean
    exit (code 0, SIGINT, SIGTERM, SIGHUP) is what a Ctrl-C or a stop of the whole process group
    looks like, so it is given ``grace`` seconds for our own shutdown to begin before it counts
    as unexpected. ``stop`` terminates the process; nothing is restarted after it.
    """

    CLEAN_EXITS = (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP)

    def __init__(
        self,
        command: list[str],
        *,
        name: str = "action server",
        cwd: Path | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        grace: float = 10.0,
    ) -> None:
        self.command, self.name, self.cwd = list(command), name, cwd
        self.backoff, self.max_backoff, self.grace = backoff, max_backoff, grace
        self.restarts = 0
        self.process: subprocess.Popen | None = None
        self._started = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # spawning and stopping never interleave
        self._thread: threading.Thread | None = None

    def _spawn(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=self.cwd)
        self._started = time.monotonic()

    def start(self) -> Supervisor:
        self._spawn()
        self._thread = threading.Thread(
            target=self._watch, name=f"{self.name} supervisor", daemon=True
        )
        self._thread.start()
        return self

    def _watch(self) -> None:
        delay = self.backoff
        while True:
            code = self.process.wait()
            if time.monotonic() - self._started >= self.max_backoff:
                delay = self.backoff  # it had been up a while: not a crash loop
            if code in self.CLEAN_EXITS and self._stopping.wait(self.grace):
                return  # our own shutdown: Ctrl-C or a stop of the process group
            if self._stopping.is_set():
                return
            self.restarts += 1
            logger.warning(
                "%s exited unexpectedly (exit code %s); restart %d in %g s",
                self.name, code, self.restarts, delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except OSError as exc:
                    logger.error("%s could not be restarted (%s)", self.name, exc)
                    return
            delay = min(delay * 2, self.max_backoff)

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._thread is not None:
            self._thread.join(timeout=timeout)


LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Channels that let whoever reaches the port choose who they are: development only.
UNSAFE_CHANNELS = ("rest", "bot.channels.rest.RestInput", "rasa.core.channels.rest.RestInput")


def public_surface(settings, host: str) -> tuple[bool, list[str]]:
    """Whether Rasa's HTTP API is served, and which channels of credentials.yml to drop.

    In production the port that providers reach serves the channel webhooks and ``/`` (a health
    check) only: Rasa's API (trackers, parse, model upload) and the REST channel (any ``sender``
    can act as any worker) are off. In development they stay on, on loopback only."""
    local = settings.development and host in LOOPBACK
    return local, ([] if local else list(UNSAFE_CHANNELS))


def cmd_run(args: argparse.Namespace) -> int:
    from bot.settings import load
    from bot.store import open_database

    settings = load()  # a missing key stops here, before minutes of training
    host, port = args.host, args.port
    api, dropped = public_surface(settings, host)
    endpoints = yaml.safe_load(Path(args.endpoints).read_text(encoding="utf-8")) or {}
    from bot.scaling import ScalingError, endpoints_for

    try:
        endpoints = endpoints_for(endpoints, settings, args.workers)
    except ScalingError as exc:
        raise CliError(str(exc)) from exc
    # Once, by this process, before anything else opens the store (they only check it); a
    # replica started with --no-migrate checks the schema now, so it fails before it serves.
    open_database(settings, upgrade=not args.no_migrate).dispose()
    model = train(locales_dir=Path(args.locales), models_dir=Path(args.models_dir))
    base = f"http://{host}:{port}"
    if api:
        simulator = (
            f"{base}/webhooks/simulator/"
            if settings.simulator_on
            else "off (HELPLINE_SIMULATOR=true to serve it)"
        )
        talk = f"""  chat as a worker on SMS, WhatsApp or Telegram, in a browser:  {simulator}
  chat as a worker (Rasa's REST channel; "sender" is any name you choose):
    curl -s {base}/webhooks/rest/webhook -d '{{"sender": "me", "message": "hello"}}'
  understand a message:
    curl -s {base}/model/parse -d '{{"text": "amar beton dey nai"}}'"""
    else:
        simulator = "ON (HELPLINE_SIMULATOR=true)" if settings.simulator_on else "off"
        talk = f"""  {settings.env}: this port serves the channel webhooks and a health check only:
    {base}/  (health)   {base}/webhooks/telegram/webhook   {base}/webhooks/twilio/webhook
  Rasa's HTTP API and the REST channel are off; the web simulator is {simulator}."""
    actions_where = (
        "with its actions in the same process"
        if settings.actions_in_process
        else f"its action server on 127.0.0.1:{args.actions_port}"
    )
    if args.workers > 1:
        actions_where += f", {args.workers} worker processes"
    dashboard = (
        f"http://127.0.0.1:{args.dashboard_port}/"
        if args.dashboard_port
        else "off (--dashboard-port 0)"
    )
    print(
        f"""
The helpline ({settings.env}) is starting on {base}, {actions_where}
(Ctrl-C stops everything). To talk to it:

{talk}
  the cases it took:  uv run helpline cases list
  caseworkers' dashboard:  {dashboard}
    first account:  uv run helpline orgs add "Our helpline" && \\
      uv run helpline users add you@example.org --org "Our helpline" --role admin
  many messages at once:  echo "boss keeps my passport" | uv run helpline parse
""",
        file=sys.stderr,
    )
    endpoints["action_endpoint"] = {"url": f"http://127.0.0.1:{args.actions_port}/webhook"}
    credentials = yaml.safe_load((ROOT / "credentials.yml").read_text(encoding="utf-8")) or {}
    for name in dropped:
        credentials.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="helpline-run-") as folder:
        endpoints_file = Path(folder, "endpoints.yml")
        credentials_file = Path(folder, "credentials.yml")
        endpoints_file.write_text(yaml.safe_dump(endpoints), encoding="utf-8")
        credentials_file.write_text(yaml.safe_dump(credentials), encoding="utf-8")
        return _serve(args, settings, model, api, endpoints, endpoints_file, credentials_file)


def _serve(args, settings, model, api, endpoints, endpoints_file, credentials_file) -> int:
    from bot import rasa_patches

    # The action-response validator built once; the actions in this process unless
    # HELPLINE_ACTIONS_IN_PROCESS=false (docs/rasa-patches.md). Sanic's workers are forked
    # later, so they inherit both.
    patches = rasa_patches.maybe_install(settings.actions_in_process)
    # Otherwise the action server (bot/action_server.py: rasa-sdk's with our logging) binds
    # 127.0.0.1 unless SANIC_HOST says otherwise (rasa-sdk's default is every address).
    # Restarted if it dies (with backoff) while Rasa runs: the channels' queue retries meanwhile.
    actions = (
        None
        if patches.in_process
        else Supervisor(
            [sys.executable, "-m", "bot.action_server", "--actions", "actions",
             "--port", str(args.actions_port)],
            cwd=ROOT,
        ).start()
    )  # fmt: skip
    dashboard = (
        Supervisor(dashboard_command("127.0.0.1", args.dashboard_port), name="dashboard",
                   cwd=ROOT).start()  # fmt: skip
        if args.dashboard_port
        else None
    )
    from rasa.__main__ import main as rasa_main

    from bot.store import open_database, rekey, retention

    # Retention once a day inside the system (counts in the log and the audit trail).
    daily = retention.start_daily(
        lambda: open_database(settings),
        retention.RetentionPolicy.from_settings(settings),
        lambda: rekey.tracker_store_engine(endpoints_file),
    )
    if actions is not None:
        # The channels' queue checks the action server's health after a turn failed.
        os.environ["HELPLINE_ACTIONS_URL"] = endpoints["action_endpoint"]["url"]
    # Rasa forks this many Sanic workers (each with its own model and the channels' queue);
    # Rasa itself refuses more than one with an in-memory lock store.
    os.environ["SANIC_WORKERS"] = str(max(1, args.workers))

    sys.argv = [
        "rasa", "run", *(["--enable-api"] if api else []),
        "--model", str(model), "--interface", args.host, "--port", str(args.port),
        "--endpoints", str(endpoints_file), "--credentials", str(credentials_file),
    ]  # fmt: skip
    try:
        rasa_main()
    finally:
        if daily is not None:
            daily.stop()
        if actions is not None:
            actions.stop()
        if dashboard is not None:
            dashboard.stop()
    return 0


def _case_row(case) -> dict:
    """What an operator's list shows: no personal data."""
    return {
        "reference": case.reference,
        "created_at": case.created_at.isoformat(timespec="seconds"),
        "urgency": case.urgency,
        "danger_kind": case.danger_kind,
        "status": case.status,
        "category": case.category,
        "language": case.language,
        "country": case.country,
        "channel": case.channel,
        "assigned_to": case.assigned_to,
        "ilo_indicators": list(case.ilo_indicators or []),
    }


def _case_detail(case) -> dict:
    from bot.store.repository import INTAKE_FIELDS

    return {
        **_case_row(case),
        "organisation": case.organisation,
        "handoff": case.handoff,
        "intake": {f: getattr(case, f) for f in INTAKE_FIELDS},
        "transcript": [
            {
                "at": m.created_at.isoformat(timespec="seconds"),
                "direction": m.direction,
                "author": m.author,
                "text": m.text,
            }
            for m in case.messages
        ],
        "events": [
            {
                "at": e.created_at.isoformat(timespec="seconds"),
                "kind": e.kind,
                "actor": e.actor,
                "detail": e.detail,
                "note": e.note,
            }
            for e in case.events
        ],
    }


def _print_table(rows: list[dict]) -> None:
    if not rows:
        print("no cases")
        return
    columns = [c for c in rows[0] if c != "ilo_indicators"]
    widths = {c: max(len(c), *(len(str(r[c] or "-")) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c] or "-").ljust(widths[c]) for c in columns))


def _operator():
    from bot.store.cases import Actor

    return Actor.operator(os.environ.get("USER", "?"))


def cmd_cases(args: argparse.Namespace) -> int:
    """The operator's side of the case service (bot/store/cases.py): the same rules as the
    dashboard, acting as the operator."""
    from bot.settings import load
    from bot.store import cases as service
    from bot.store import open_database
    from bot.store import repository as repo

    db = open_database(load())
    actor = _operator()
    try:
        with db.session() as session:
            if args.action == "list":
                filters = service.Filters(
                    status=args.status or ("open" if args.open else "any"),
                    urgency=args.urgency,
                    language=args.language,
                    country=args.country,
                    category=args.category,
                    search=args.search,
                )
                cases = service.queue(session, actor, filters, limit=args.limit)
                if args.assigned_to:
                    cases = [c for c in cases if c.assigned_to == args.assigned_to]
                rows = [_case_row(c) for c in cases]
                if args.format == "json":
                    print(json.dumps(rows, ensure_ascii=False, indent=1))
                else:
                    _print_table(rows)
                return 0
            reference, text = args.reference or "", args.text or ""
            try:
                if args.action == "release":
                    case = service.release(session, actor, reference)
                    print(f"{case.reference}: released; the bot answers this worker again")
                    return 0
                if args.action == "reply":
                    message = service.reply(session, actor, reference, text)
                    held = " (the worker sent STOP: held until START)" if (
                        message.contact.opted_out
                    ) else ""
                    print(f"{message.case.reference}: reply queued on {message.channel}{held};"
                          " the running helpline sends it")  # fmt: skip
                    return 0
                if args.action in ("hold", "unhold"):
                    case = service.set_legal_hold(session, actor, reference, args.action == "hold")
                    print(f"{case.reference}: legal hold {'on' if case.legal_hold else 'off'}"
                          " (retention deletes nothing of a case on hold)")  # fmt: skip
                    return 0
                if args.action == "assign":
                    case = service.assign(session, actor, reference, text or None)
                    print(f"{case.reference}: assigned to {case.assigned_to or 'nobody'}")
                    return 0
                if args.action == "status":
                    case = service.set_status(session, actor, reference, text)
                    print(f"{case.reference}: {case.status}")
                    return 0
                if args.action == "urgency":
                    case = service.set_urgency(session, actor, reference, text)
                    print(f"{case.reference}: {case.urgency}")
                    return 0
                if args.action == "note":
                    service.note(session, actor, reference, text)
                    print(f"{reference}: note added")
                    return 0
                case = service.view(session, actor, reference)
            except repo.StoreError as exc:
                raise CliError(str(exc)) from exc
            detail = _case_detail(case)
        if args.format == "json":
            print(json.dumps(detail, ensure_ascii=False, indent=1))
        else:
            for key, value in detail.items():
                if isinstance(value, (list, dict)):
                    print(f"{key}:")
                    items = value.items() if isinstance(value, dict) else enumerate(value)
                    for k, v in items:
                        print(f"  {k}: {v}")
                else:
                    print(f"{key}: {value}")
        return 0
    finally:
        db.dispose()


def _read_password() -> str:
    """From stdin when it is not a terminal (scripts), else asked twice without echo."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (12 characters or more): ")
    if getpass.getpass("Again: ") != first:
        raise CliError("the two passwords differ")
    return first


def cmd_orgs(args: argparse.Namespace) -> int:
    from bot.settings import load
    from bot.store import accounts, open_database
    from bot.store.repository import StoreError

    db = open_database(load())
    try:
        with db.session() as session:
            try:
                if args.action == "set-response":
                    pairs = dict(v.split("=", 1) for v in args.values if "=" in v)
                    if not pairs or len(pairs) != len(args.values):
                        raise CliError("set-response NAME immediate=15 high=240 normal=2880")
                    org = accounts.set_response_minutes(
                        session, args.name, pairs, actor=_operator()
                    )
                    print(f"{org.name}: response targets (minutes) {org.response_minutes}")
                    return 0
                org = accounts.add_organisation(session, args.name, actor=_operator())
            except (StoreError, ValueError) as exc:
                raise CliError(str(exc)) from exc
            role = "the deploying organisation" if org.deploying else "a partner organisation"
            print(f"{org.name}: added, {role}")
        return 0
    finally:
        db.dispose()


def cmd_users(args: argparse.Namespace) -> int:
    from bot.settings import load
    from bot.store import accounts, open_database
    from bot.store.repository import StoreError

    settings = load()
    two_factor = not settings.development  # required in production, optional in development
    db = open_database(settings)
    try:
        with db.session() as session:
            try:
                if args.action == "add":
                    if not args.org or not args.role:
                        raise CliError("users add needs --org NAME and --role ROLE")
                    user, uri = accounts.add_user(
                        session, args.email, organisation_name=args.org, role=args.role,
                        password=_read_password(), actor=_operator(), two_factor=two_factor,
                    )  # fmt: skip
                    print(f"{user.email}: added ({args.role}, {args.org})")
                elif args.action == "disable":
                    user = accounts.disable_user(session, args.email, actor=_operator())
                    print(f"{user.email}: disabled and signed out everywhere")
                    return 0
                else:
                    user, uri = accounts.reset_user(
                        session, args.email, password=_read_password(), actor=_operator(),
                        two_factor=two_factor,
                    )  # fmt: skip
                    print(f"{user.email}: new password, signed out everywhere")
            except StoreError as exc:
                raise CliError(str(exc)) from exc
        if uri:
            print("Two-factor sign-in is required. Add this to an authenticator app (shown once;"
                  " the dashboard also offers a QR code at the first sign-in):")  # fmt: skip
            print(uri)
        return 0
    finally:
        db.dispose()


DASHBOARD_PORT = 5080


def dashboard_command(host: str, port: int) -> list[str]:
    # uvicorn believes X-Forwarded-For only from 127.0.0.1 (its default): a reverse proxy on
    # the same machine. No access log: paths carry case references.
    return [sys.executable, "-m", "uvicorn", "bot.dashboard.app:from_settings", "--factory",
            "--host", host, "--port", str(port), "--no-access-log", "--log-level", "warning",
            "--no-server-header"]  # fmt: skip


def cmd_dashboard(args: argparse.Namespace) -> int:
    os.execv(sys.executable, dashboard_command(args.host, args.port))
    return 0  # pragma: no cover


def cmd_telegram(args: argparse.Namespace) -> int:
    import asyncio

    from bot.channels import config as channel_config
    from bot.channels.telegram import set_webhook

    settings = channel_config.load()
    try:
        ok = asyncio.run(set_webhook(settings))
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"webhook {'set' if ok else 'NOT set'}: {settings.public_url}/webhooks/telegram/webhook")
    return 0 if ok else 1


def cmd_db(args: argparse.Namespace) -> int:
    from bot.settings import load
    from bot.store import open_database

    settings = load()
    open_database(settings, upgrade=True).dispose()
    print(f"case store is up to date ({settings.database_url.split('://')[0]})", file=sys.stderr)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from bot.store.crypto import generate_key, generate_token

    print(generate_token() if args.token else generate_key())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helpline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--locales",
        default=str(locale_packs.DEFAULT_LOCALES_DIR),
        help="folder of locale packs (default: %(default)s)",
    )
    parser.add_argument(
        "--models-dir",
        default=str(ROOT / "models"),
        help="where models are kept (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the model if its inputs changed")
    p.add_argument("--force", action="store_true", help="train even if nothing changed")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("parse", help="parse stdin, one message per line, into JSON lines")
    p.add_argument("--model", help="model file (default: the newest in --models-dir)")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("run", help="train if needed and start the server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5005)
    p.add_argument("--actions-port", type=int, default=5055)
    p.add_argument(
        "--dashboard-port", type=int, default=DASHBOARD_PORT,
        help="the caseworkers' dashboard, on 127.0.0.1 (0: do not start it)",
    )  # fmt: skip
    p.add_argument("--endpoints", default=str(ROOT / "endpoints.yml"))
    p.add_argument(
        "--workers", type=int, default=1,
        help="Rasa worker processes on this port (more than 1 needs PostgreSQL and Redis:"
        " docs/scaling.md)",
    )  # fmt: skip
    p.add_argument(
        "--no-migrate", action="store_true",
        help="do not bring the case store's schema up to date at start (`helpline db upgrade`"
        " does it; for replicas that must not race)",
    )  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "cases",
        help="list or show cases; reply to a worker; release a handed-off conversation",
    )
    p.add_argument(
        "action",
        choices=["list", "show", "reply", "assign", "status", "urgency", "note", "release",
                 "hold", "unhold"],  # fmt: skip
    )
    p.add_argument("reference", nargs="?", help="case reference (HX-123456)")
    p.add_argument(
        "text", nargs="?",
        help="reply: the message; assign: an e-mail (none: unassign); status, urgency: the new"
        " value; note: the note",
    )  # fmt: skip
    p.add_argument("--search", help="a reference, or words of an employer, agent or workplace")
    p.add_argument("--format", choices=["table", "json"], default="table")
    for name in ("status", "urgency", "language", "country", "category", "assigned-to"):
        p.add_argument(f"--{name}", help=f"only cases with this {name}")
    p.add_argument("--open", action="store_true", help="only cases not resolved or closed")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_cases)

    p = sub.add_parser("orgs", help="organisations (the first one added is the deploying one)")
    p.add_argument("action", choices=["add", "set-response"])
    p.add_argument("name")
    p.add_argument("values", nargs="*", help="for set-response: URGENCY=MINUTES ...")
    p.set_defaults(func=cmd_orgs)

    p = sub.add_parser(
        "users", help="dashboard accounts; the password is read from stdin when it is not a tty"
    )
    p.add_argument("action", choices=["add", "disable", "reset"])
    p.add_argument("email")
    p.add_argument("--org", help="for add: the organisation")
    p.add_argument("--role", choices=["caseworker", "supervisor", "admin"], help="for add")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("dashboard", help="serve the caseworkers' dashboard alone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DASHBOARD_PORT)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("telegram", help="register the Telegram webhook (with its secret token)")
    p.add_argument("action", choices=["set-webhook"])
    p.set_defaults(func=cmd_telegram)

    p = sub.add_parser("db", help="bring the case store's schema up to date")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cmd_db)

    from bot.store import rekey, retention

    rekey.register(sub)
    retention.register(sub)

    p = sub.add_parser("keygen", help="print a new encryption key for HELPLINE_ENCRYPTION_KEY")
    p.add_argument(
        "--token", action="store_true",
        help="a random token instead (HELPLINE_PSEUDONYM_KEY, TELEGRAM_WEBHOOK_SECRET,"
        " HELPLINE_NOTIFY_SECRET)",
    )  # fmt: skip
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("locales", help="check or summarise the locale packs")
    p.add_argument("action", choices=["check", "summary"])
    p.add_argument("packs", nargs="*")
    p.set_defaults(func=lambda a: locale_packs.main([a.action, *a.packs]))
    return parser


def _quiet_logs() -> None:
    """Logs to stderr at WARNING: stdout is for results, and debug logs carry message text.
    Library noise is hidden and Rasa's records that would quote a worker are cut (bot/logs.py)."""
    from bot import logs

    logs.configure("helpline", logging.WARNING)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_logs()
    try:
        return int(args.func(args) or 0)
    except (CliError, locale_packs.LocalePackError, SettingsError) as exc:
        print(f"helpline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
