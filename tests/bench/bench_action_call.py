"""One custom action call as Rasa's processor makes it, stock and with bot/rasa_patches.py.

Rasa's real ``RemoteAction.run`` for ``action_greet`` (our action, on a SQLite case store in a
temporary folder) on the same tracker (ten earlier turns, then "hello"), each way ``--calls``
times after a warm-up, one call after another:

- the check of the action's answer alone: Rasa's ``jsonschema.validate`` against one validator
  built once (``install_validator_once``);
- the whole call: over HTTP to the real action server (``python -m bot.action_server``, its own
  process, as ``helpline run`` starts it) with Rasa's check, with the validator built once, and
  in this process (``InProcessActionEndpoint``) with the validator built once;
- the copy the in-process endpoint makes of the call and of the answer (JSON out and back in).

Prints the median milliseconds per call of each and the ratios. Machines are noisy: compare
figures from the same run.

    python tests/bench/bench_action_call.py [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from rasa.core.actions.action import RemoteAction  # noqa: E402
from rasa.core.channels.channel import CollectingOutputChannel  # noqa: E402
from rasa.core.nlg import TemplatedNaturalLanguageGenerator  # noqa: E402
from rasa.shared.core.domain import Domain  # noqa: E402
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered  # noqa: E402
from rasa.shared.core.trackers import DialogueStateTracker  # noqa: E402
from rasa.utils.endpoints import EndpointConfig  # noqa: E402

from bot import rasa_patches  # noqa: E402

WARM_UP = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conversation(domain: Domain) -> DialogueStateTracker:
    """Ten earlier turns (a question, the bot's answer), then "hello"."""
    events: list = [SlotSet("language", "en")]
    for i in range(10):
        text = f"my boss keeps my passport, what can I do? ({i})"
        parse = {"text": text, "intent": {"name": "documents", "confidence": 0.9}, "entities": []}
        events += [
            ActionExecuted("action_listen"),
            UserUttered(text, parse["intent"], [], parse, input_channel="rest"),
            ActionExecuted("action_rights_answer"),
            BotUttered("Your employer may not keep your passport. " * 6),
        ]
    parse = {"text": "hello", "intent": {"name": "greet", "confidence": 0.9}, "entities": []}
    events += [
        ActionExecuted("action_listen"),
        UserUttered("hello", parse["intent"], [], parse, input_channel="rest", message_id="b-1"),
    ]
    return DialogueStateTracker.from_events("bench-worker", events, slots=domain.slots)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_calls(calls: int, call) -> float:
    for _ in range(WARM_UP):
        call()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return median_ms(samples)


async def time_runs(calls: int, action: RemoteAction, tracker, domain) -> float:
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    output = CollectingOutputChannel()
    for _ in range(WARM_UP):
        await action.run(output, nlg, tracker, domain)
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        events = await action.run(output, nlg, tracker, domain)
        samples.append(time.perf_counter() - t0)
    assert any(e.type_name == "bot" for e in events), "the action said nothing"
    return median_ms(samples)


def start_action_server(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.action_server", "--actions", "actions", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the action server stopped at start-up") from None
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("the action server did not start in 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench-action-call-")
    # The action server (a child) and this process's in-process actions use the same store.
    os.environ["HELPLINE_ENV"] = "development"
    os.environ["HELPLINE_DATABASE_URL"] = f"sqlite:///{folder}/cases.db"
    from bot.settings import load
    from bot.store import open_database

    open_database(load(), upgrade=True).dispose()

    domain = Domain.load(str(ROOT / "domain.yml"))
    tracker = conversation(domain)
    port = free_port()
    server = start_action_server(port)
    http = EndpointConfig(f"http://127.0.0.1:{port}/webhook")
    in_process = rasa_patches.InProcessActionEndpoint()
    try:
        answer = asyncio.run(
            http.request(
                json=RemoteAction("action_greet", http)._action_call_format(tracker, domain)
            )
        )
        validate = RemoteAction("action_greet", None)._validate_action_result

        rasa_patches.restore()
        stock_validate = time_calls(args.calls, lambda: validate(answer))
        http_stock = asyncio.run(
            time_runs(args.calls, RemoteAction("action_greet", http), tracker, domain)
        )
        assert rasa_patches.install_validator_once()
        validate = RemoteAction("action_greet", None)._validate_action_result
        once_validate = time_calls(args.calls, lambda: validate(answer))
        http_once = asyncio.run(
            time_runs(args.calls, RemoteAction("action_greet", http), tracker, domain)
        )
        local_once = asyncio.run(
            time_runs(args.calls, RemoteAction("action_greet", in_process), tracker, domain)
        )
    finally:
        server.terminate()
        server.wait(30)
        rasa_patches.restore()

    call = RemoteAction("action_greet", in_process)._action_call_format(tracker, domain)
    # The codecs the endpoint uses: those of the two ends of the HTTP path (aiohttp's json and
    # Sanic's, ujson when installed).
    loads, dumps = rasa_patches._sanic_loads, rasa_patches._sanic_dumps
    copy_call = time_calls(args.calls, lambda: loads(json.dumps(call)))
    copy_answer = time_calls(args.calls, lambda: json.loads(dumps(answer)))

    size = len(json.dumps(call))
    print(f"action_greet, {args.calls} calls each, median ms per call (tracker + domain: {size} B)")
    print(f"  answer check, Rasa's jsonschema.validate       {stock_validate:8.3f}")
    print(f"  answer check, validator built once             {once_validate:8.3f}"
          f"   {stock_validate / once_validate:5.1f}x faster")  # fmt: skip
    print(f"  whole call, HTTP, Rasa's check (stock Rasa)    {http_stock:8.3f}")
    print(f"  whole call, HTTP, validator once               {http_once:8.3f}"
          f"   {http_stock / http_once:5.1f}x faster than stock")  # fmt: skip
    print(f"  whole call, in process, validator once         {local_once:8.3f}"
          f"   {http_once / local_once:5.1f}x faster than HTTP, "
          f"{http_stock / local_once:.1f}x faster than stock")  # fmt: skip
    print(f"  of which: the in-process copy of the call      {copy_call:8.3f}")
    print(f"            and of the answer                    {copy_answer:8.3f}")


if __name__ == "__main__":
    main()
