"""Rasa 3.6 patches for faster turns (bot/rasa_patches.py, issue 13).

Real parts on both sides: Rasa's ``RemoteAction`` and ``FormAction`` with a tracker built from
Rasa's events and our ``domain.yml``, our actions on a real SQLite case store, and, to compare
with, Rasa SDK's own action server (its Sanic app, in a thread, on loopback). Every in-process
result is checked against what the same call gives through HTTP. No model is needed except for
the one turn through Rasa's processor (marked slow; it never trains).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from pathlib import Path

import jsonschema
import jsonschema.validators
import pytest
from rasa.core.actions.action import ActionExecutionRejection, ActionExtractSlots, RemoteAction
from rasa.core.actions.forms import FormAction
from rasa.core.channels.channel import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.core.utils import AvailableEndpoints
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from actions import dialogue
from actions import messages as m
from actions.form import ValidateGrievanceForm
from bot import rasa_patches
from bot.channels.inbox import MESSAGE_ID_PREFIX
from bot.i18n import Translations
from bot.settings import SettingsError
from tests.live_server import free_port, rasa_sdk_in_thread

ROOT = Path(__file__).resolve().parent.parent

DOMAIN = Domain.load(str(ROOT / "domain.yml"))
VALID_ANSWER = {
    "events": [{"event": "slot", "timestamp": None, "name": "awaiting", "value": "menu"}],
    "responses": [{"text": "hello", "buttons": [], "elements": [], "custom": {}}],
}


@pytest.fixture(autouse=True)
def stock_rasa():
    """Each test starts from Rasa's own methods and leaves them so."""
    rasa_patches.restore()
    yield
    rasa_patches.restore()


@pytest.fixture(scope="module")
def action_server_url():
    """Rasa SDK's own app with our actions, in this process (tests/live_server.py)."""
    yield from rasa_sdk_in_thread()


@pytest.fixture(params=["http", "in-process"])
def endpoint(request, action_server_url) -> EndpointConfig:
    """The same action calls, through the action server and in this process."""
    if request.param == "http":
        return EndpointConfig(action_server_url)
    return rasa_patches.InProcessActionEndpoint()


def tracker(
    text: str,
    intent: str = "greet",
    *,
    slots: dict | None = None,
    form: str | None = None,
    message_id: str | None = None,
    **parsed,
) -> DialogueStateTracker:
    """A tracker as Rasa's processor holds it: slots (and a form) from earlier turns, then the
    worker's message. ``parsed``: more of the parse result (our normaliser's ``choice``)."""
    events = [SlotSet(name, value) for name, value in (slots or {}).items()]
    if form:
        events.append(ActiveLoop(form))
    events.append(ActionExecuted(ACTION_LISTEN_NAME))
    intent = {"name": intent, "confidence": 0.9}
    parse = {"text": text, "intent": intent, "entities": [], **parsed}
    events.append(
        UserUttered(
            text, parse["intent"], [], parse, input_channel="rest", message_id=message_id or "r-1"
        )
    )
    sender = "worker-" + secrets.token_hex(4)
    return DialogueStateTracker.from_events(sender, events, slots=DOMAIN.slots)


def run_form(endpoint: EndpointConfig, t: DialogueStateTracker) -> list:
    """What Rasa's processor does in a form's turn: extract the slots, then run the form."""
    nlg = TemplatedNaturalLanguageGenerator(DOMAIN.responses)
    output = CollectingOutputChannel()

    async def turn():
        extracted = await ActionExtractSlots(endpoint).run(output, nlg, t, DOMAIN)
        t.update_with_events(extracted, DOMAIN)
        return await FormAction("grievance_form", endpoint).run(output, nlg, t, DOMAIN)

    return asyncio.run(turn())


def run(action, t: DialogueStateTracker) -> list[dict]:
    """What Rasa's processor does with an action: run it, get its events (timestamps aside)."""
    nlg = TemplatedNaturalLanguageGenerator(DOMAIN.responses)
    events = asyncio.run(action.run(CollectingOutputChannel(), nlg, t, DOMAIN))
    return [{k: v for k, v in e.as_dict().items() if k != "timestamp"} for e in events]


# 1. The answer's schema check.


@pytest.fixture
def builds(monkeypatch) -> list[dict]:
    """Counts validators built for the answers' schema: ``jsonschema.validate`` and the patch
    both find the class with ``jsonschema.validators.validator_for(schema)`` once for every
    validator they build (jsonschema calls it for other schemas too: not counted)."""
    built: list[dict] = []
    real = jsonschema.validators.validator_for
    spec = RemoteAction.action_response_format_spec()

    def counting(schema, *args, **kwargs):
        if schema == spec:
            built.append(schema)
        return real(schema, *args, **kwargs)

    monkeypatch.setattr(jsonschema.validators, "validator_for", counting)
    return built


def test_the_answer_validator_is_built_once_for_many_calls(builds):
    action = RemoteAction("action_greet", None)
    for _ in range(20):
        assert action._validate_action_result(VALID_ANSWER)
    assert len(builds) == 20  # Rasa's own: one for every call (what the counter counts)

    assert rasa_patches.install_validator_once()
    assert rasa_patches.install_validator_once()  # twice: harmless
    for _ in range(50):
        assert action._validate_action_result(VALID_ANSWER)
        assert RemoteAction("validate_grievance_form", None)._validate_action_result(
            {"events": [], "responses": []}
        )
    assert len(builds) == 21  # one more, for the whole process


INVALID_ANSWERS = {
    "events not a list": {"events": {"event": "slot"}},
    "unknown event": {"events": [{"event": "not-an-event"}], "responses": []},
    "slot without name": {"events": [{"event": "slot", "value": 1}]},
    "response not an object": {"events": [], "responses": ["hello"]},
    "two faults (jsonschema reports the best match)": {
        "events": [{"event": "slot", "value": 1}],
        "responses": "hello",
    },
    "not an object": ["events"],
    "nothing": None,
}


def _error(answer) -> jsonschema.ValidationError:
    with pytest.raises(jsonschema.ValidationError) as caught:
        RemoteAction("action_greet", None)._validate_action_result(answer)
    return caught.value


@pytest.mark.parametrize("answer", INVALID_ANSWERS.values(), ids=INVALID_ANSWERS.keys())
def test_an_invalid_answer_is_refused_with_rasas_own_error(answer):
    stock = _error(answer)
    assert rasa_patches.install_validator_once()
    assert getattr(RemoteAction._validate_action_result, "helpline_patch", False)
    ours = _error(answer)
    assert ours.message == stock.message
    assert "Failed to validate Action server response from API" in ours.message
    assert (list(ours.path), list(ours.schema_path), ours.validator, ours.instance) == (
        list(stock.path),
        list(stock.schema_path),
        stock.validator,
        stock.instance,
    )


def test_another_rasa_version_is_left_alone(monkeypatch, caplog):
    import rasa.version

    stock = RemoteAction.__dict__["_validate_action_result"]
    read_endpoints = AvailableEndpoints.__dict__["read_endpoints"]
    monkeypatch.setattr(rasa.version, "__version__", "3.7.0")
    assert rasa_patches.maybe_install(in_process=True) == rasa_patches.Installed(False, False)
    assert RemoteAction.__dict__["_validate_action_result"] is stock
    assert AvailableEndpoints.__dict__["read_endpoints"] is read_endpoints
    assert "written for Rasa 3.6.x and this is Rasa 3.7.0" in caplog.text


# 2. Actions in Rasa's process, compared with the action server.


def _said(lang: str, *keys: str) -> list[str]:
    return [Translations().text(lang, key) for key in keys]


CALLS = {
    "greeting in Bengali": (
        "action_greet",
        lambda: tracker("নমস্কার", slots={"language": "bn"}),
        [{"event": "slot", "name": "awaiting", "value": "menu"}],
        _said("bn", m.GREETING, m.MENU),
    ),
    "menu 2 starts the report": (
        "action_route",
        lambda: tracker("2", "help", slots={"awaiting": "menu", "language": "en"}, choice="2"),
        [
            {"event": "slot", "name": "awaiting", "value": None},
            {"event": "slot", "name": "intake_cancelled", "value": None},
            {"event": "slot", "name": "awaiting", "value": None},
            {"event": "followup", "name": "grievance_form"},
        ],
        _said("en", m.INTAKE_PRIVACY),
    ),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_in_process_actions_answer_rasa_as_the_action_server_does(
    services, action_server_url, call
):
    name, make_tracker, expected_events, expected_said = call
    over_http = run(RemoteAction(name, EndpointConfig(action_server_url)), make_tracker())
    in_process = run(RemoteAction(name, rasa_patches.InProcessActionEndpoint()), make_tracker())
    assert in_process == over_http
    said = [e["text"] for e in in_process if e["event"] == "bot"]
    assert said == expected_said
    assert [e for e in in_process if e["event"] != "bot"] == expected_events


def test_an_action_cannot_change_rasas_tracker_in_process(services, monkeypatch):
    """Over HTTP an action holds a copy of the tracker; in this process it must too."""
    real_menu = dialogue.show_menu

    def meddling(turn, greeting=False):
        turn.tracker.latest_message["intent"]["name"] = "meddled"
        turn.tracker.latest_message["entities"].append({"entity": "meddled"})
        turn.tracker.slots["language"] = "meddled"
        return real_menu(turn, greeting=greeting)

    monkeypatch.setattr(dialogue, "show_menu", meddling)
    t = tracker("hello", slots={"language": "en"})
    before = t.current_state()
    events = run(RemoteAction("action_greet", rasa_patches.InProcessActionEndpoint()), t)
    assert [e["text"] for e in events if e["event"] == "bot"] == _said("en", m.GREETING, m.MENU)
    assert t.current_state() == before
    assert t.latest_message.intent["name"] == "greet"


FORM_SLOTS = {"language": "en", "requested_slot": "intake_what"}


ODD_VALUES = {
    "a tuple comes back a list": ((1, "two"), [1, "two"]),
    "a number as a key comes back a string": ({1: "one"}, {"1": "one"}),
}


@pytest.mark.parametrize("value", ODD_VALUES.values(), ids=ODD_VALUES.keys())
def test_an_answer_is_plain_json_as_over_http(services, endpoint, monkeypatch, value):
    sent, received = value
    monkeypatch.setattr(dialogue, "say_menu", lambda turn: turn.set("awaiting", sent))
    events = run(RemoteAction("action_greet", endpoint), tracker("hello"))
    assert [e["value"] for e in events if e["event"] == "slot"] == [received]


def test_an_answer_json_cannot_hold_fails_as_over_http(services, endpoint, monkeypatch):
    monkeypatch.setattr(dialogue, "say_menu", lambda turn: turn.set("awaiting", {"menu"}))
    with pytest.raises(RasaException) as failure:
        run(RemoteAction("action_greet", endpoint), tracker("hello"))
    assert failure.value.__cause__.status == 500


def test_a_form_validation_rejection_reaches_rasas_form_as_a_rejection(
    services, endpoint, monkeypatch
):
    """Rasa's FormAction asks ``validate_grievance_form``; its rejection must come back as
    Rasa's ActionExecutionRejection (the processor then lets other policies predict)."""
    from rasa_sdk.interfaces import ActionExecutionRejection as SdkRejection

    def refuse(self, slot, dispatcher, tracker):
        raise SdkRejection("validate_grievance_form", f"no answer for {slot}")

    monkeypatch.setattr(ValidateGrievanceForm, "validate_answer", refuse)
    t = tracker("my boss", "inform", slots=FORM_SLOTS, form="grievance_form")
    with pytest.raises(ActionExecutionRejection) as rejected:
        run_form(endpoint, t)
    assert rejected.value.action_name == "validate_grievance_form"
    assert rejected.value.message == "no answer for intake_what"


def test_without_a_rejection_the_form_takes_the_answer(services, endpoint):
    t = tracker("my boss", "inform", slots=FORM_SLOTS, form="grievance_form")
    events = run_form(endpoint, t)
    slots = {e.key: e.value for e in events if isinstance(e, SlotSet)}
    assert slots["intake_what"] == "my boss"
    assert slots["requested_slot"] == "intake_country"


def test_an_action_that_raises_is_a_rasa_exception_that_quotes_nothing(
    services, endpoint, monkeypatch
):
    """A queued message's failure must reach Rasa's processor as an exception (it logs
    "Encountered an exception while running action", which the queue watches)."""
    marker = "zq" + secrets.token_hex(6)

    def fail(turn, greeting=False):
        raise ValueError(f"cannot show the menu for {turn.text!r}")

    monkeypatch.setattr(dialogue, "show_menu", fail)
    t = tracker(f"hello {marker}", message_id=f"{MESSAGE_ID_PREFIX}{uuid.uuid4().hex}")
    with pytest.raises(RasaException) as failure:
        run(RemoteAction("action_greet", endpoint), t)
    assert str(failure.value) == "Failed to execute custom action 'action_greet'"
    answer = failure.value.__cause__
    assert isinstance(answer, ClientResponseError) and answer.status == 500
    if isinstance(endpoint, rasa_patches.InProcessActionEndpoint):
        assert marker not in str(answer)  # the action server's 500 quotes the whole call
        assert "ActionFailed" in answer.text


def test_an_unknown_action_is_a_rasa_exception(services, endpoint):
    with pytest.raises(RasaException) as failure:
        run(RemoteAction("action_nobody_wrote", endpoint), tracker("hello"))
    assert str(failure.value) == "Failed to execute custom action 'action_nobody_wrote'"
    assert failure.value.__cause__.status == 404


def test_the_in_process_endpoint_runs_actions_only():
    endpoint = rasa_patches.InProcessActionEndpoint()
    with pytest.raises(ValueError, match="only runs actions"):
        asyncio.run(endpoint.request(method="get", subpath="/health"))
    with pytest.raises(TypeError, match="json="):
        asyncio.run(endpoint.request())


# 3. Switching it on.


@pytest.fixture
def endpoints_file(tmp_path):
    path = tmp_path / "endpoints.yml"
    path.write_text(
        "action_endpoint:\n  url: http://127.0.0.1:5055/webhook\n  enable_selective_domain: true\n",
        encoding="utf-8",
    )
    return str(path)


def test_the_environment_switch_gives_every_agent_the_in_process_endpoint(
    monkeypatch, endpoints_file
):
    from rasa.core.agent import load_agent

    monkeypatch.setenv(rasa_patches.ENV_IN_PROCESS, "true")
    assert rasa_patches.maybe_install() == rasa_patches.Installed(True, True)
    assert rasa_patches.maybe_install() == rasa_patches.Installed(True, True)  # idempotent
    endpoints = AvailableEndpoints.read_endpoints(endpoints_file)  # as `rasa run` reads them
    assert isinstance(endpoints.action, rasa_patches.InProcessActionEndpoint)
    assert endpoints.action.kwargs == {"enable_selective_domain": True}
    agent = asyncio.run(load_agent(endpoints=endpoints))  # as Rasa's server builds its agent
    assert agent.action_endpoint is endpoints.action
    assert RemoteAction("action_greet", agent.action_endpoint)._is_selective_domain_enabled()

    rasa_patches.restore()
    stock = AvailableEndpoints.read_endpoints(endpoints_file)
    assert type(stock.action) is EndpointConfig


def test_unset_the_switch_follows_the_settings_default(monkeypatch, endpoints_file):
    from bot.settings import parse

    monkeypatch.delenv(rasa_patches.ENV_IN_PROCESS, raising=False)
    wanted = parse().actions_in_process
    assert rasa_patches.maybe_install() == rasa_patches.Installed(True, wanted)
    action = AvailableEndpoints.read_endpoints(endpoints_file).action
    assert isinstance(action, rasa_patches.InProcessActionEndpoint) is wanted


@pytest.mark.parametrize("value", ["false", "0", "off"])
def test_switched_off_actions_stay_on_the_action_server(monkeypatch, endpoints_file, value):
    monkeypatch.setenv(rasa_patches.ENV_IN_PROCESS, value)
    assert rasa_patches.maybe_install() == rasa_patches.Installed(True, False)
    action = AvailableEndpoints.read_endpoints(endpoints_file).action
    assert type(action) is EndpointConfig
    assert action.url == "http://127.0.0.1:5055/webhook"


def test_a_switch_that_is_not_yes_or_no_stops_start_up(monkeypatch):
    monkeypatch.setenv(rasa_patches.ENV_IN_PROCESS, "maybe")
    with pytest.raises(SettingsError, match=rasa_patches.ENV_IN_PROCESS):
        rasa_patches.maybe_install()


def test_an_agent_built_in_code_is_switched_with_its_options():
    from rasa.core.agent import Agent

    agent = Agent(action_endpoint=EndpointConfig("http://127.0.0.1:5055/webhook", x=1))
    endpoint = rasa_patches.use_in_process_actions(agent)
    assert agent.action_endpoint is endpoint and endpoint.kwargs == {"x": 1}
    assert rasa_patches.use_in_process_actions(agent) is endpoint
    assert isinstance(endpoint.copy(), rasa_patches.InProcessActionEndpoint)


@pytest.mark.slow
def test_turns_through_rasas_processor_with_no_action_server(
    services, tmp_path, monkeypatch, caplog
):
    """The whole path: ``rasa run``'s reading of the endpoints, Rasa's agent and processor, the
    policies' choice, our action; then a failing action as the channels' queue must see it.
    Loads the newest model in models/ (never trains one)."""
    from rasa.core.agent import load_agent
    from rasa.core.channels.channel import UserMessage

    from bot.channels.inbox import RASA_ACTION_FAILED
    from bot.cli import latest_model

    model = latest_model(ROOT / "models")
    if model is None:
        pytest.skip("NO MODEL in models/: `make train` first (this test never trains one)")
    nobody = f"http://127.0.0.1:{free_port()}/webhook"  # no action server there
    endpoints_file = tmp_path / "endpoints.yml"
    endpoints_file.write_text(f"action_endpoint:\n  url: {nobody}\n", encoding="utf-8")
    assert rasa_patches.maybe_install(in_process=True).in_process
    endpoints = AvailableEndpoints.read_endpoints(str(endpoints_file))
    agent = asyncio.run(load_agent(model_path=str(model), endpoints=endpoints))
    assert isinstance(agent.processor.action_endpoint, rasa_patches.InProcessActionEndpoint)

    def turn(message_id: str) -> list[dict]:
        sender = "worker-" + secrets.token_hex(4)
        message = UserMessage("hello", CollectingOutputChannel(), sender, message_id=message_id)

        async def handle():
            await agent.handle_message(message)
            return message.output_channel.messages

        return asyncio.run(handle())

    replies = turn("rest-1")
    assert [r["text"] for r in replies][-1] == Translations().text("en", m.MENU)
    assert RASA_ACTION_FAILED not in caplog.text

    def fail(turn, greeting=False):
        raise ValueError("the menu is broken")

    monkeypatch.setattr(dialogue, "show_menu", fail)
    assert turn(f"{MESSAGE_ID_PREFIX}{uuid.uuid4().hex}") == []
    failures = [
        r
        for r in caplog.records
        if r.name == "rasa.core.processor" and str(r.msg).startswith(RASA_ACTION_FAILED)
    ]
    # The exception's type: on the record, or in its text once bot.logs has summarised it
    # (when the suite configured logging before this test).
    assert len(failures) == 1
    record = failures[0]
    assert (record.exc_info and record.exc_info[0] is RasaException) or (
        "(RasaException <- " in record.getMessage()
    )
