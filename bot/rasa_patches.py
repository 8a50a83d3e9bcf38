"""Two changes to how Rasa 3.6 runs a custom action, for faster turns (issue 13).

Every custom action Rasa runs (``action_greet``, the form's ``validate_grievance_form``, ...) goes
through ``rasa.core.actions.action.RemoteAction.run``: the tracker is posted to the action server
and the answer checked against a JSON schema. Both steps cost more than the action itself.

1. **The answer's schema check** (``install_validator_once``). ``RemoteAction.
   _validate_action_result`` calls ``jsonschema.validate``, which finds the validator class,
   checks the schema against its meta-schema and builds a new validator on every call (about
   14 ms an action, against 0.6 ms with one validator). The replacement builds that validator
   once per process and reports an invalid answer exactly as Rasa does: the same
   ``jsonschema.ValidationError`` (``best_match``, as ``jsonschema.validate`` picks it) with
   Rasa's sentence appended to its message. It replaces a private method, so it is installed on
   Rasa 3.6.x only (``SUPPORTED_RASA``); on any other version it logs a warning and changes
   nothing.

2. **Actions in Rasa's own process** (``InProcessActionEndpoint``). The action endpoint is the
   object ``RemoteAction`` calls ``request(json=...)`` on. This one runs Rasa SDK's
   ``ActionExecutor`` (with the ``actions`` package) directly instead of posting over HTTP, and
   answers Rasa exactly as Rasa SDK's ``/webhook`` route would (``rasa_sdk/endpoint.py``):

   - the answer is plain JSON data: the call and the answer go through the codecs the HTTP path
     uses (aiohttp's ``json.dumps`` and Sanic's loads; Sanic's dumps and aiohttp's ``json.loads``),
     so an action shares no object with Rasa's tracker and an answer the action server could not
     send (a value JSON cannot hold) fails here too, as an error;
   - an ``ActionExecutionRejection`` (a form's validation refusing the turn) becomes the error
     the action server answers with, HTTP 400 with the action's name and the error, raised as
     Rasa's ``ClientResponseError``: ``RemoteAction.run`` turns that into Rasa's own
     ``ActionExecutionRejection``, which the form and the processor handle as they always do;
   - an action that is not in the package is a 404 (``RemoteAction.run``: ``RasaException``);
   - any other exception is a 500 (``RasaException``), so Rasa's processor logs "Encountered an
     exception while running action", which the channels' queue watches. The error's text names
     the exception's type only, never its message or the tracker (the action server's 500 quotes
     both);
   - Rasa's timeout for the call (``timeout=``, 300 s) still applies.

   The hook that makes every agent use it is ``rasa.core.utils.AvailableEndpoints.
   read_endpoints``, the one place where Rasa's commands (``rasa run``, ``rasa shell``, ...)
   read ``endpoints.yml``: the replacement reads the file as before and swaps the ``action``
   endpoint it found (keeping its options, such as ``enable_selective_domain``) for an
   ``InProcessActionEndpoint``. Nothing of Rasa's agent or processor is replaced: they receive
   the endpoint as they would receive any other. This is less invasive than wrapping
   ``Agent.load_model`` (which every model load, test and ``helpline parse`` goes through) and
   it reaches every agent that Rasa's server builds, including one built for a new model. An
   agent built in code is switched with ``use_in_process_actions(agent)``.

``maybe_install()`` installs (1) always and (2) when ``HELPLINE_ACTIONS_IN_PROCESS`` says so
(``bot.settings``: ``actions_in_process``, default true); call it before Rasa reads its
endpoints. With (2), no action server is needed and ``HELPLINE_ACTIONS_URL`` must not be set
(the channels' queue would wait for one). Rasa's Sanic workers (``SANIC_WORKERS``) are forked,
so they inherit the patches; each builds its own executor on its first action.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from rasa.utils.endpoints import ClientResponseError, EndpointConfig

logger = logging.getLogger(__name__)

SUPPORTED_RASA = "3.6."  # the patches were read against Rasa 3.6.21's source
ENV_IN_PROCESS = "HELPLINE_ACTIONS_IN_PROCESS"
DEFAULT_ACTIONS_PACKAGE = "actions"

_lock = threading.Lock()
_original_validate: Any = None  # RemoteAction._validate_action_result, while ours is installed
_original_read_endpoints: Any = None  # AvailableEndpoints.read_endpoints (the classmethod)
_executors: dict[str, Any] = {}  # package -> rasa_sdk ActionExecutor, built on first use


def rasa_version() -> str:
    from rasa.version import __version__

    return __version__


def rasa_supported() -> bool:
    """Whether the installed Rasa is the version these patches were written against."""
    return rasa_version().startswith(SUPPORTED_RASA)


def _refuse(what: str) -> bool:
    if rasa_supported():
        return False
    logger.warning(
        "%s not installed: it was written for Rasa %sx and this is Rasa %s",
        what,
        SUPPORTED_RASA,
        rasa_version(),
    )
    return True


# 1. The answer's schema check, with one validator per process.


def _build_response_validator() -> Any:
    import jsonschema.validators
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _make_validate(validator: Any) -> Any:
    from jsonschema.exceptions import best_match
    from rasa.shared.constants import DOCS_BASE_URL

    def _validate_action_result(self: Any, result: dict[str, Any]) -> bool:
        """Rasa 3.6's check of the action server's answer, with a validator built once."""
        error = best_match(validator.iter_errors(result))
        if error is None:
            return True
        # Rasa's own sentence, word for word (RemoteAction._validate_action_result).
        error.message += (
            f". Failed to validate Action server response from API, "
            f"make sure your response from the Action endpoint is valid. "
            f"For more information about the format visit "
            f"{DOCS_BASE_URL}/custom-actions"
        )
        raise error

    _validate_action_result.helpline_patch = True  # type: ignore[attr-defined]
    return _validate_action_result


def validate_action_result_once() -> Any:
    """A replacement for ``RemoteAction._validate_action_result`` with its validator built now:
    what ``install_validator_once`` installs, for a caller that patches it for a while only
    (``nlu.danger_eval``)."""
    return _make_validate(_build_response_validator())


def install_validator_once() -> bool:
    """Makes ``RemoteAction`` check answers with one validator built now, for this process.
    Returns whether the patch is in place; installing twice changes nothing."""
    global _original_validate
    if _refuse("the action-answer validator patch"):
        return False
    from rasa.core.actions.action import RemoteAction

    with _lock:
        current = RemoteAction.__dict__["_validate_action_result"]
        if getattr(current, "helpline_patch", False):
            return True
        patched = validate_action_result_once()
        _original_validate = current
        RemoteAction._validate_action_result = patched
    return True


# 2. Actions in Rasa's own process.


def _executor(package: str) -> Any:
    """Rasa SDK's executor with the actions of ``package``, built once per process."""
    executor = _executors.get(package)
    if executor is not None:
        return executor
    with _lock:
        executor = _executors.get(package)
        if executor is None:
            from rasa_sdk import utils as sdk_utils
            from rasa_sdk.executor import ActionExecutor

            sdk_utils.check_version_compatibility(rasa_version())  # as the action server does
            executor = ActionExecutor()
            executor.register_package(package)
            _executors[package] = executor
            logger.info(
                "custom actions run in this process (%d actions from %s)",
                len(executor.actions),
                package,
            )
        return executor


def _wire_codecs() -> tuple[Any, Any]:
    """Sanic's JSON codec (ujson when it is installed), as on Rasa SDK's side of the wire."""
    try:
        from sanic.request import json_loads
        from sanic.response import json_dumps
    except ImportError:  # pragma: no cover - Sanic comes with Rasa
        return json.loads, json.dumps
    return json_loads, json_dumps


_sanic_loads, _sanic_dumps = _wire_codecs()


def _error(status: int, reason: str, action_name: Any, error: str) -> ClientResponseError:
    body = json.dumps({"error": error, "action_name": action_name})
    return ClientResponseError(status, reason, body)


class InProcessActionEndpoint(EndpointConfig):
    """Rasa's action endpoint, answered by Rasa SDK's executor in this process (no HTTP)."""

    def __init__(
        self, package: str = DEFAULT_ACTIONS_PACKAGE, *, like: EndpointConfig | None = None
    ) -> None:
        # ``like``: the endpoint read from endpoints.yml, whose options RemoteAction reads
        # (enable_selective_domain); its URL is not used.
        super().__init__(url=f"in-process:{package}", **(dict(like.kwargs) if like else {}))
        self.package = package

    async def request(
        self,
        method: str = "post",
        subpath: str | None = None,
        content_type: str | None = "application/json",
        compress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Runs the action call in ``kwargs["json"]``; answers as the action server would.

        ``content_type``, ``compress`` and ``headers`` describe the wire, and there is none."""
        if method.lower() != "post" or (subpath or "").strip("/") not in ("", "webhook"):
            raise ValueError(
                f"an in-process action endpoint only runs actions (post to the webhook), "
                f"not {method.upper()} {subpath or '/'}"
            )
        if "json" not in kwargs:
            raise TypeError("an action call needs its body as json=...")
        # What the action server would read: a copy, sharing nothing with Rasa's tracker.
        action_call = _sanic_loads(json.dumps(kwargs["json"]))
        timeout = kwargs.get("timeout")
        # On the actions' own thread: their case-store work blocks, Rasa's event loop must not
        # (it keeps accepting webhooks and running other workers' NLU meanwhile).
        run = asyncio.wrap_future(_actions_thread().submit(self._run(action_call)))
        body = await (asyncio.wait_for(run, timeout) if timeout else run)
        return json.loads(body)

    async def _run(self, action_call: Any) -> str:
        """Rasa SDK's ``/webhook`` route without HTTP: its answer's body, or its error."""
        from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException

        name = action_call.get("next_action") if isinstance(action_call, dict) else None
        executor = _executor(self.package)  # an actions package that fails to import: raised
        try:
            result = await executor.run(action_call)
            return _sanic_dumps(result)
        except ActionExecutionRejection as e:
            logger.debug("action %s rejected its execution", e.action_name)
            raise _error(400, "Bad Request", e.action_name, e.message) from e
        except ActionNotFoundException as e:
            logger.error("no action %s in package %s", e.action_name, self.package)
            raise _error(404, "Not Found", e.action_name, e.message) from e
        except Exception as e:
            # Type only: the message may quote the worker (see actions.actions.failed).
            raise _error(
                500, "Internal Server Error", name, f"the action raised {type(e).__name__}"
            ) from e

    def copy(self) -> InProcessActionEndpoint:
        endpoint = InProcessActionEndpoint(self.package)
        endpoint.kwargs = dict(self.kwargs)
        return endpoint


class _ActionsThread:
    """One thread with its own event loop, where in-process actions run one at a time (as
    they did in the action server's single process). Started on the first action call, so a
    Sanic worker forked after ``maybe_install`` starts its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="helpline-actions", daemon=True
        )
        self.thread.start()

    def submit(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


_thread: _ActionsThread | None = None
_thread_pid: int | None = None


def _actions_thread() -> _ActionsThread:
    global _thread, _thread_pid
    import os

    with _lock:
        if _thread is None or _thread_pid != os.getpid():  # a forked worker starts its own
            _thread, _thread_pid = _ActionsThread(), os.getpid()
        return _thread


def use_in_process_actions(
    agent: Any, package: str = DEFAULT_ACTIONS_PACKAGE
) -> InProcessActionEndpoint:
    """Makes an agent (and its processor, if a model is loaded) run custom actions in this
    process; a model loaded later gets the same endpoint (``Agent.load_model`` passes it on)."""
    endpoint = agent.action_endpoint
    if not isinstance(endpoint, InProcessActionEndpoint):
        endpoint = InProcessActionEndpoint(package, like=endpoint)
    agent.action_endpoint = endpoint
    if agent.processor is not None:
        agent.processor.action_endpoint = endpoint
    return endpoint


def install_in_process_actions(package: str = DEFAULT_ACTIONS_PACKAGE) -> bool:
    """Makes every agent that Rasa builds from an endpoints file, from now on in this process,
    run custom actions in this process. Returns whether that is in place (Rasa 3.6.x only)."""
    global _original_read_endpoints
    if _refuse("in-process actions"):
        return False
    from rasa.core.utils import AvailableEndpoints

    with _lock:
        current = AvailableEndpoints.__dict__["read_endpoints"]
        if getattr(current.__func__, "helpline_patch", False):
            return True

        def read_endpoints(cls: Any, endpoint_file: Any) -> Any:
            endpoints = current.__func__(cls, endpoint_file)
            endpoints.action = InProcessActionEndpoint(package, like=endpoints.action)
            return endpoints

        read_endpoints.helpline_patch = True  # type: ignore[attr-defined]
        read_endpoints.__doc__ = current.__func__.__doc__
        _original_read_endpoints = current
        AvailableEndpoints.read_endpoints = classmethod(read_endpoints)  # type: ignore[assignment]
    logger.info("custom actions will run in Rasa's process (%s=true)", ENV_IN_PROCESS)
    return True


def in_process_wanted(environ: Any = None) -> bool:
    """``HELPLINE_ACTIONS_IN_PROCESS``, read by the typed settings (``bot.settings``, which holds
    its default); ``SettingsError`` for a value that is not yes or no."""
    from bot.settings import parse

    return parse(environ).actions_in_process


@dataclass(frozen=True)
class Installed:
    """What ``maybe_install`` put in place. ``in_process`` false: start the action server."""

    validator: bool
    in_process: bool


def maybe_install(in_process: bool | None = None) -> Installed:
    """The patches for this process; call before Rasa reads ``endpoints.yml``.

    ``in_process``: run the actions in Rasa's process; ``None``: as the settings say
    (``HELPLINE_ACTIONS_IN_PROCESS``, ``bot.settings.Settings.actions_in_process``).
    """
    if in_process is None:
        in_process = in_process_wanted()
    validator = install_validator_once()
    return Installed(validator, install_in_process_actions() if in_process else False)


def restore() -> None:
    """Puts Rasa's own methods back (tests)."""
    global _original_validate, _original_read_endpoints
    from rasa.core.actions.action import RemoteAction
    from rasa.core.utils import AvailableEndpoints

    with _lock:
        if _original_validate is not None:
            RemoteAction._validate_action_result = _original_validate
            _original_validate = None
        if _original_read_endpoints is not None:
            AvailableEndpoints.read_endpoints = _original_read_endpoints
            _original_read_endpoints = None
