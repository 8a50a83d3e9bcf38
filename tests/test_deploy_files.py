"""The deployment files (``deploy/``) against the code they start, so that they cannot drift.

Every environment variable they set is a setting of ``bot/settings.py``, an outbound rate limit
``bot/channels/ratelimit.py`` reads, or one of a few variables read by Rasa or uvicorn
themselves (checked in their installed source). Every ``helpline`` command in them parses with
the real command line (``bot.cli.build_parser``). Replicas never migrate and wait for the
migrate job; the load balancer passes exactly the channels' webhook routes (as Rasa mounts
them) and ``/``. The env example names every setting a replica may need and loads in
production once its keys are filled in. Nothing here starts a server: docs/scaling.md says what
ran where.
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest
import yaml

from bot import cli
from bot import settings as settings_module
from bot.channels import ratelimit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yml"
ENV_EXAMPLE = DEPLOY / "helpline.env.example"
NGINX = DEPLOY / "nginx.conf"
DOCKERFILE = DEPLOY / "Dockerfile"
UNITS = DEPLOY / "systemd"
HELPLINE_IMAGE = "helpline:local"

# Settings `helpline run` sets for itself: a deployment must not.
SET_BY_HELPLINE_RUN = {"HELPLINE_ACTIONS_URL"}
# Read by a dependency, not by bot/settings.py: the name and the installed file that reads it.
THIRD_PARTY = {
    "SQL_POOL_SIZE": "rasa/core/constants.py",  # the tracker store's pool (Rasa)
    "SQL_MAX_OVERFLOW": "rasa/core/constants.py",
    "FORWARDED_ALLOW_IPS": "uvicorn/config.py",  # whose X-Forwarded-For uvicorn believes
}
# The images' own variables (not ours).
IMAGE_VARIABLES = {"postgres": {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}}
NAME_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def setting_names() -> set[str]:
    return {f.field_info.extra["env"] for f in settings_module.Settings.__fields__.values()}


def rate_names() -> set[str]:
    return {name for kind in ratelimit.DEFAULT_LIMITS for name in ratelimit.env_names(kind)}


def known_names() -> set[str]:
    return (setting_names() - SET_BY_HELPLINE_RUN) | rate_names() | set(THIRD_PARTY)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def helpline_services(doc: dict) -> dict[str, dict]:
    return {n: s for n, s in doc["services"].items() if s.get("image") == HELPLINE_IMAGE}


def env_example() -> tuple[dict[str, str], set[str]]:
    """The example's NAME=value lines, and the names in commented ``# NAME=value`` lines."""
    values, commented = {}, set()
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            found = NAME_LINE.match(line.lstrip("# "))
            if found:
                commented.add(found.group(1))
            continue
        found = NAME_LINE.match(line)
        assert found, f"{ENV_EXAMPLE.name}:{number}: not NAME=value: {line!r}"
        name, value = found.groups()
        # systemd's EnvironmentFile keeps a trailing comment as part of the value.
        assert "#" not in value and value == value.strip(), (
            f"{ENV_EXAMPLE.name}:{number}: {name}: a comment or spaces after the value"
        )
        assert name not in values, f"{ENV_EXAMPLE.name}:{number}: {name} twice"
        values[name] = value
    return values, commented


def parse_helpline(argv: list[str], where: str):
    """``helpline ARGS`` through the real parser; a clear failure instead of SystemExit."""
    try:
        return cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `helpline {shlex.join(argv)}` is not a valid helpline command")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def exec_argv(parser: configparser.ConfigParser, instance: str = "5005") -> list[str]:
    """ExecStart= as systemd would run it: %i and the unit's own Environment= expanded."""
    env = dict(item.split("=", 1) for item in shlex.split(parser["Service"].get("Environment", "")))
    line = parser["Service"]["ExecStart"].replace("%i", instance)
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line)
    return shlex.split(line)


# --- compose ---------------------------------------------------------------------------------
def test_compose_has_the_documented_services():
    services = compose()["services"]
    assert set(services) == {
        "postgres", "redis", "migrate", "replica1", "replica2", "dashboard", "nginx",
    }  # fmt: skip
    assert set(helpline_services(compose())) == {"migrate", "replica1", "replica2", "dashboard"}


def test_compose_sets_only_variables_the_code_reads():
    doc, known = compose(), known_names()
    for name, service in doc["services"].items():
        names = set(service.get("environment") or {})
        if service.get("image") == HELPLINE_IMAGE:
            for env_file in service.get("env_file") or []:
                # The operator's copy of the example (never committed) stands for the example.
                assert env_file == "helpline.env", f"{name}: env_file {env_file}"
                names |= set(env_example()[0])
            unknown = names - known
            assert not unknown, f"{name} sets {sorted(unknown)}: not in bot/settings.py"
        else:
            unknown = names - IMAGE_VARIABLES.get(name, set())
            assert not unknown, f"{name} sets {sorted(unknown)}"


def test_third_party_variables_are_read_where_we_say():
    import site

    for name, relative in THIRD_PARTY.items():
        sources = [Path(p, relative) for p in site.getsitepackages() if Path(p, relative).is_file()]
        assert sources, f"{relative} is not installed"
        assert f'"{name}"' in sources[0].read_text(encoding="utf-8"), f"{relative} reads no {name}"


def test_replicas_never_migrate_and_start_after_the_migrate_job():
    services = compose()["services"]
    migrate = parse_helpline(services["migrate"]["command"][1:], "compose migrate")
    assert (migrate.command, migrate.action) == ("db", "upgrade")
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    replicas = {
        name: s for name, s in services.items()
        if s.get("command", [None, None])[:2] == ["helpline", "run"]
    }  # fmt: skip
    assert set(replicas) == {"replica1", "replica2"}
    for name, service in replicas.items():
        args = parse_helpline(service["command"][1:], f"compose {name}")
        assert args.no_migrate, f"{name} would migrate at start"
        assert args.dashboard_port == 0, f"{name} would start a dashboard"
        needs = service["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        if args.workers > 1:
            assert (
                needs["postgres"]["condition"] == needs["redis"]["condition"] == ("service_healthy")
            )
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{args.port}/'" in check, f"{name} checks another port"
        assert service["stop_grace_period"] == "30s"
    dashboard = services["dashboard"]
    args = parse_helpline(dashboard["command"][1:], "compose dashboard")
    assert args.command == "dashboard"
    assert dashboard["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert dashboard["ports"] == [f"127.0.0.1:{args.port}:{args.port}"], "dashboard on loopback"
    assert f"{args.port}/healthz" in " ".join(dashboard["healthcheck"]["test"])


def test_the_dashboards_health_route_exists(tmp_path):
    from bot.dashboard.app import Config, create_app
    from bot.store.crypto import generate_key
    from bot.store.database import Database

    database = Database(f"sqlite:///{tmp_path / 'store.db'}", (generate_key(),))
    app = create_app(database, Config(development=False, require_two_factor=True, search_key=b"k"))
    assert "/healthz" in {route.path for route in app.routes}
    database.dispose()


# --- nginx -----------------------------------------------------------------------------------
def public_paths() -> set[str]:
    """The webhook routes our channels serve, mounted as Rasa mounts them (/webhooks/<name>)."""
    from rasa.core.channels.channel import register
    from sanic import Sanic

    from bot.channels import config as channel_config
    from bot.channels.telegram import TelegramInput
    from bot.channels.twilio import TwilioInput

    channel_settings = channel_config.from_settings(settings_module.parse({}))
    test_mode, Sanic.test_mode = Sanic.test_mode, True  # no clash in Sanic's app registry
    try:
        app = Sanic("deploy_files_routes")
        channels = [TwilioInput(channel_settings), TelegramInput(channel_settings)]
        register(channels, app, "/webhooks/")
        app.router.finalize()
    finally:
        Sanic.test_mode = test_mode
    return {"/" + r.path for r in app.router.routes if "POST" in r.methods}


def test_the_load_balancer_passes_the_webhooks_and_health_only():
    text = NGINX.read_text(encoding="utf-8")
    exact = set(re.findall(r"location = (\S+) \{", text))
    assert exact == {"/"} | public_paths()
    assert re.search(r"location / \{\s*return 404;\s*\}", text), "everything else: 404"
    size = re.search(r"client_max_body_size (\d+)k;", text)
    assert int(size.group(1)) * 1024 == settings_module.parse({}).webhook_max_bytes


def test_the_load_balancer_lists_the_compose_replicas():
    services = compose()["services"]
    upstream = set(re.findall(r"^\s*server (\S+:\d+)", NGINX.read_text(encoding="utf-8"), re.M))
    replicas = {
        f"{name}:{parse_helpline(s['command'][1:], name).port}"
        for name, s in services.items()
        if s.get("command", [None, None])[:2] == ["helpline", "run"]
    }
    assert upstream == replicas
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert set(services["nginx"]["depends_on"]) == {n.split(":")[0] for n in replicas}


# --- Dockerfile ------------------------------------------------------------------------------
def test_the_image_copies_only_what_runs_and_trains_inside():
    text = DOCKERFILE.read_text(encoding="utf-8")
    copied = [p for line in re.findall(r"^COPY (.+)$", text, re.M) for p in line.split()[:-1]]
    for path in copied:
        assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"
    assert not {".", "models", "tests", ".env"} & set(copied)
    assert re.search(r"^RUN helpline train\b", text, re.M), "replicas must not train at start"
    assert re.search(r"^USER helpline$", text, re.M)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {"**/.env", "**/*.env", "**/*.db", "models"} <= set(ignored)


# --- systemd ---------------------------------------------------------------------------------
def test_systemd_units_parse_and_run_real_commands():
    units = {path.name: unit(path) for path in sorted(UNITS.glob("*.service"))}
    assert set(units) == {
        "helpline-migrate.service", "helpline@.service", "helpline-dashboard.service",
    }  # fmt: skip
    for name, parsed in units.items():
        assert {"Unit", "Service"} <= set(parsed.sections()), name
        service = parsed["Service"]
        assert service["EnvironmentFile"] == "/etc/helpline/helpline.env", name
        assert service["User"] == "helpline", name
        for option, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                              "PrivateTmp": "yes", "ProtectHome": "yes"}.items():  # fmt: skip
            assert service.get(option) == value, f"{name}: {option}={value}"
        argv = exec_argv(parsed)
        assert argv[0] == "/opt/helpline/.venv/bin/helpline", name
        parse_helpline(argv[1:], name)

    migrate = units["helpline-migrate.service"]
    assert migrate["Service"]["Type"] == "oneshot"
    args = parse_helpline(exec_argv(migrate)[1:], "helpline-migrate.service")
    assert (args.command, args.action) == ("db", "upgrade")

    for name in ("helpline@.service", "helpline-dashboard.service"):
        parsed = units[name]
        for option in ("Requires", "After"):
            assert "helpline-migrate.service" in parsed["Unit"].get(option, "").split(), (
                f"{name}: {option}=helpline-migrate.service (migrations first)"
            )
        assert parsed["Service"]["Restart"] == "on-failure", name
        assert parsed["Service"]["KillSignal"] == "SIGTERM", name
        assert parsed["Service"]["TimeoutStopSec"], name
        assert parsed["Install"]["WantedBy"] == "multi-user.target", name

    replica = units["helpline@.service"]
    args = parse_helpline(exec_argv(replica, "5006")[1:], "helpline@5006.service")
    assert (args.command, args.port, args.no_migrate, args.dashboard_port) == (
        "run", 5006, True, 0,
    )  # fmt: skip
    assert args.actions_port == 15006, "one action server port per instance"
    assert args.workers > 1
    # The one folder `helpline run` writes (the current model's time stamp).
    assert replica["Service"]["ReadWritePaths"].split() == ["/opt/helpline/models"]
    assert Path(args.models_dir).name == "models"

    dashboard = units["helpline-dashboard.service"]
    args = parse_helpline(exec_argv(dashboard)[1:], "helpline-dashboard.service")
    assert (args.command, args.host) == ("dashboard", "127.0.0.1"), "dashboard on loopback"


# --- the env example -------------------------------------------------------------------------
def test_the_env_example_names_every_setting_and_nothing_else():
    values, commented = env_example()
    unknown = (set(values) | commented) - known_names()
    assert not unknown, f"{ENV_EXAMPLE.name} names {sorted(unknown)}: not read by the code"
    missing = setting_names() - SET_BY_HELPLINE_RUN - set(values)
    assert not missing, f"{ENV_EXAMPLE.name} does not say how to set {sorted(missing)}"
    assert commented <= rate_names(), "commented examples are the rate limits"


def test_the_env_example_loads_in_production_once_its_keys_are_set():
    from bot.scaling import endpoints_for
    from bot.store.crypto import generate_key, generate_token

    values, _ = env_example()
    with pytest.raises(settings_module.SettingsError, match="HELPLINE_ENCRYPTION_KEY"):
        settings_module.load(values)
    filled = {**values, "HELPLINE_ENCRYPTION_KEY": generate_key(),
              "HELPLINE_PSEUDONYM_KEY": generate_token()}  # fmt: skip
    loaded = settings_module.load(filled)
    assert loaded.production and loaded.queue_lease_seconds == 30.0
    # Enough for several workers: PostgreSQL for both stores, Redis for Rasa's locks.
    endpoints = endpoints_for({}, loaded, workers=2)
    assert endpoints["tracker_store"]["dialect"] == "postgresql"
    assert endpoints["lock_store"]["type"] == "redis"
    assert ratelimit.limits_from_env(filled) == ratelimit.limits_from_env({})
