"""What the helpline's processes log: what an operator needs, and nothing about a worker.

``configure(process_name)`` is called first thing by every process (``helpline run`` and the
other commands, the action server, the dashboard):

- Library warnings an operator cannot act on are not shown: deprecations inside libraries
  (TensorFlow, Keras, SQLAlchemy 1.4, Sanic, pyparsing...) and advice Rasa gives that does not
  apply to this project (``RASA_ADVICE``). Warnings raised in our own packages still show.
- Chatty libraries log warnings only: Alembic's plugin set-up, Rasa SDK's list of registered
  actions, TensorFlow. HTTP clients never log at INFO: httpx writes every request's URL, and a
  Telegram URL carries the bot token.
- Rasa's telemetry is off unless the operator set ``RASA_TELEMETRY_ENABLED``.
- ``NoWorkerData`` guards the log calls of Rasa and Rasa SDK that carry a tracker, a request
  body or a worker's message (``GUARDED``): a traceback becomes its exception types, debug
  records are dropped.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("bot", "actions", "nlu")
_OUR_FILES = tuple(f"{ROOT / package}{os.sep}" for package in OUR_PACKAGES)

# Warnings about a library's own future; nothing an operator can do about them.
LIBRARY_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)

# Rasa's advice that does not apply here: entity values are mapped by our gazetteer
# (nlu/gazetteer.py) from the packs' names, not by an EntitySynonymMapper or a trained extractor;
# slots are set by our actions; the annotations serve the packs' checks.
RASA_ADVICE = (
    "Slot auto-fill has been removed in 3.0",
    "You have defined synonyms in your training data, but your NLU configuration does not"
    " include an 'EntitySynonymMapper'",
    "You have defined training data consisting of entity examples, but your NLU configuration"
    " does not include an entity extractor",
)
_RASA_ADVICE = re.compile("|".join(re.escape(a) for a in RASA_ADVICE))

QUIET = {
    "alembic": logging.WARNING,  # "setup plugin ...", "Context impl SQLiteImpl."
    "sqlalchemy": logging.WARNING,
    "rasa_sdk.executor": logging.WARNING,  # "Registered function for ..." for every action
    "rasa_sdk.plugin": logging.WARNING,
    "tensorflow": logging.ERROR,
    "absl": logging.ERROR,
    "h5py": logging.WARNING,
    "matplotlib": logging.WARNING,
    "httpx": logging.WARNING,  # "HTTP Request: POST .../bot<token>/sendMessage"
    "httpcore": logging.WARNING,
    "telegram": logging.WARNING,  # its debug lines hold chat ids and message text
    "twilio": logging.WARNING,  # every API request, headers included
    "urllib3": logging.WARNING,
}

# The loggers of Rasa and Rasa SDK whose calls carry a tracker, a request body or a message:
# rasa_sdk.endpoint: "Exception occurred during execution of request" with the traceback (and
#   it answers Rasa with the request body); rasa_sdk.executor: "Contents of ignored event" (debug);
# rasa.core.processor: "Encountered an exception while running action" with the traceback, whose
#   ClientResponseError quotes the action server's answer, the whole tracker; its debug lines
#   hold the message text, parse data and slots, as do those of the forms, the policies and
#   the action module; rasa.core.channels.rest: "rest.message.received.failure" with the text;
# rasa.server: API errors as traceback text; sanic.error: a handler's traceback.
GUARDED = (
    "rasa_sdk.endpoint",
    "rasa_sdk.executor",
    "rasa.core.processor",
    "rasa.core.actions.action",
    "rasa.core.actions.forms",
    "rasa.core.channels.rest",
    "rasa.core.nlg.interpolator",
    "rasa.core.policies.memoization",
    "rasa.core.policies.rule_policy",
    "rasa.core.policies.ensemble",
    "rasa.core.tracker_store",
    "rasa.server",
    "sanic.error",
)
_STRUCTLOG_EVENT = re.compile(r"\b((?:rest|interpolator)\.[a-z_.]+)")


def telemetry_off() -> None:
    """Rasa reports usage to Rasa's servers unless told not to; the operator may still opt in."""
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")


def ours(filename: str) -> bool:
    return filename.startswith(_OUR_FILES)


def shown(message: Warning | str, category: type[Warning], filename: str) -> bool:
    """Whether a warning is for the operator: ours, or a library's that is not noise."""
    if ours(filename):
        return True
    if issubclass(category, LIBRARY_WARNINGS):
        return False
    return not _RASA_ADVICE.search(str(message))


def _install_warning_filters() -> None:
    for category in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"(bot|actions|nlu)(\.|$)")
    for advice in RASA_ADVICE:
        warnings.filterwarnings("ignore", message=re.escape(advice))
    # Libraries add filters of their own when imported (Sanic shows every DeprecationWarning
    # "once"); what they let through is still sorted here, when it would be shown.
    original = warnings.showwarning
    if getattr(original, "helpline", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if shown(message, category, filename):
            original(message, category, filename, lineno, file, line)

    showwarning.helpline = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


class NoWorkerData(logging.Filter):
    """Keeps a guarded logger's records to what they say, never the data they quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False  # debug lines quote messages, slots, trackers and events
        message = record.getMessage()
        if message.startswith("Exception occurred during execution of request"):
            message = message.split(" <", 1)[0]  # then the request's repr
        elif message.startswith("Traceback (most recent call last)"):
            last = message.rstrip().rsplit("\n", 1)[-1]
            message = f"error ({last.split(':', 1)[0]})"
        elif record.name in ("rasa.core.channels.rest", "rasa.core.nlg.interpolator"):
            event = _STRUCTLOG_EVENT.search(message)  # structlog's rendering, with the text
            message = event.group(1) if event else record.name
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message} ({exception_types(record.exc_info[1])})"
        record.msg, record.args = message, ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def exception_types(exc: BaseException) -> str:
    """``RasaException <- ClientResponseError``: the chain of types, none of the messages."""
    names, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names.append(type(exc).__name__)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return " <- ".join(names)


def install_filter() -> None:
    """Adds ``NoWorkerData`` to every guarded logger, once (loggers keep their filters when the
    libraries configure logging later)."""
    for name in GUARDED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, NoWorkerData) for f in logger.filters):
            logger.addFilter(NoWorkerData())


def configure(process_name: str, level: int = logging.INFO) -> None:
    """Call first, before Rasa or TensorFlow are imported. Records go to stderr with the
    process's name, unless the process already has a handler (Rasa installs its own)."""
    telemetry_off()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    _install_warning_filters()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-8s {process_name} %(name)s - %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(quiet)
    install_filter()
