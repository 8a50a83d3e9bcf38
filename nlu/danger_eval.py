"""Danger detection measured like a safety system: recall on danger messages, false alarms on
hard negatives, end to end through the dialogue.

A message counts as detected when, sent as a new worker's first message through the real Rasa
agent (NLU, rules, forms) and our real actions (run in-process by rasa-sdk's executor instead
of over HTTP) against a real SQLite case store, it opened a case with urgency ``immediate``.

Sets (``tests/data/danger/``): ``eval/`` was written by writers who saw neither the packs nor
the lexicons, and is never trained on, tuned to, or read: only aggregate figures are printed.
``dev/`` was written the same way and may be read while tuning. Rows:
``label<TAB>kind<TAB>variant<TAB>form<TAB>text``; Burmese rows are also run re-encoded in Zawgyi.

Used by ``make bench-danger`` (``tests/bench/bench_danger.py``) and by the recall gate in
``tests/test_danger.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

from nlu.danger import load_rows

DANGER_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "danger"
DANGER_SETS = {"eval": DANGER_DIR / "eval", "dev": DANGER_DIR / "dev"}
VARIANTS = {
    "bn": ("native", "romanized"),
    "ne": ("native", "romanized"),
    "vi": ("native", "no_diacritics"),
    "id": ("native", "informal"),
}


def load_danger_set(directory: Path) -> list[dict]:
    """Rows ``{"language", "label", "kind", "variant", "form", "text"}``; Burmese also in
    Zawgyi (variant ``zawgyi``)."""
    from nlu.evaluation import with_zawgyi_copies

    rows = []
    for path in sorted(Path(directory).glob("*.tsv")):
        for row in load_rows(path):  # the packs' labelled messages have the same format
            if row["variant"] not in VARIANTS.get(path.stem, ("native",)):
                raise ValueError(f"{path}: unknown variant {row['variant']!r} for {path.stem}")
            rows.append({"language": path.stem, **row})
    return with_zawgyi_copies(rows)


def _legacy_danger_kind(turn) -> str | None:
    """The previous release's rule: the intent classifier's ``emergency`` alone."""
    from actions.dialogue import DANGER_SCORE, UNSPECIFIED

    if turn.choice or turn.command:
        return None
    if turn.intent == "emergency" or turn.score("emergency") >= DANGER_SCORE:
        return UNSPECIFIED
    return None


def _detector_only(ours):
    """Ours without the intent classifier's ``emergency`` (to measure what it adds)."""

    def danger_kind(turn) -> str | None:
        saved = turn.message, turn.intent
        turn.message = {**saved[0], "intent": {"name": "out_of_scope", "confidence": 1.0},
                        "intent_ranking": []}  # fmt: skip
        turn.intent = "out_of_scope"
        try:
            return ours(turn)
        finally:
            turn.message, turn.intent = saved

    return danger_kind


@contextlib.contextmanager
def dialogue(model: Path, *, legacy: bool = False, detector_only: bool = False):
    """The real agent and our actions in one process, on a fresh SQLite case store."""
    from unittest import mock

    from rasa.core.agent import Agent
    from rasa.utils.endpoints import EndpointConfig
    from rasa_sdk.executor import ActionExecutor

    from actions import dialogue as dialogue_module
    from actions import services as services_module
    from bot import settings as settings_module
    from bot.emergency import Notifier
    from bot.store import Database

    class Alerts(Notifier):
        def __init__(self) -> None:
            self.events: list[dict] = []

        def alert(self, event: dict) -> None:
            self.events.append(event)

    import logging

    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)  # Rasa's per-turn debug lines would print the messages
    executor = ActionExecutor()
    executor.register_package("actions")

    async def request(self, method="post", subpath=None, content_type=None, **kwargs):
        return await executor.run(kwargs["json"])

    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_module.load(
            {"HELPLINE_DATABASE_URL": f"sqlite:///{tmp}/cases.db", "HELPLINE_ENV": "development"}
        )
        db = Database(settings.database_url, settings.encryption_keys)
        db.upgrade()
        alerts = Alerts()
        services = services_module.Services(settings, database=db, notifier=alerts)
        previous = services_module._services
        services_module.use(services)
        # The action answer's schema validator built once, as ``helpline run`` has it
        # (bot/rasa_patches.py): Rasa's own builds one per action call (about 50 ms a message).
        from rasa.core.actions.action import RemoteAction

        from bot import rasa_patches

        validate = rasa_patches.validate_action_result_once()
        patches = [
            mock.patch.object(EndpointConfig, "request", request),
            mock.patch.object(RemoteAction, "_validate_action_result", validate),
        ]
        if legacy or detector_only:
            ours = dialogue_module.Turn.__dict__["danger_kind"].func
            rule = _legacy_danger_kind if legacy else _detector_only(ours)
            patches.append(mock.patch.object(dialogue_module.Turn, "danger_kind", property(rule)))
        if detector_only:  # the rule for the `emergency` intent: answered like any other
            from actions.actions import ActionEmergency

            def route(self, turn) -> None:
                dialogue_module.route(turn)

            patches.append(mock.patch.object(ActionEmergency, "handle", route))
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            agent = Agent.load(str(model), action_endpoint=EndpointConfig("http://in-process"))
            try:
                yield DialogueRunner(agent, services, alerts)
            finally:
                services_module.use(previous)
                db.dispose()


class DialogueRunner:
    def __init__(self, agent, services, alerts) -> None:
        self.agent = agent
        self.services = services
        self.alerts = alerts
        self.loop = asyncio.new_event_loop()

    def send(self, sender: str, text: str) -> list[str]:
        from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

        out = CollectingOutputChannel()
        message = UserMessage(text, out, sender, input_channel="rest")
        self.loop.run_until_complete(self.agent.handle_message(message))
        return [m.get("text") or "" for m in out.messages]

    def immediate_case(self, sender: str):
        from sqlalchemy import select

        from bot.store.models import Case, Contact

        pseudonym = self.services.pseudonym("rest", sender)
        with self.services.database.session() as session:
            return session.execute(
                select(Case.urgency, Case.danger_kind)
                .join(Contact, Case.contact_id == Contact.id)
                .where(Contact.pseudonym == pseudonym, Case.urgency == "immediate")
            ).first()

    def detected(self, text: str) -> tuple[bool, str | None]:
        """Sends ``text`` as a new worker's first message: did it open an immediate case?"""
        sender = f"danger-eval-{uuid.uuid4().hex}"
        self.send(sender, text)
        case = self.immediate_case(sender)
        return case is not None, (case.danger_kind if case is not None else None)


def run(
    model: Path, rows: list[dict], *, legacy: bool = False, detector_only: bool = False
) -> list[dict]:
    """Each row with ``detected`` (and the ``found_kind``), end to end through the dialogue."""
    out = []
    with dialogue(model, legacy=legacy, detector_only=detector_only) as runner:
        for row in rows:
            detected, kind = runner.detected(row["text"])
            out.append({**row, "detected": detected, "found_kind": kind})
    return out


def summarize(results: list[dict]) -> dict:
    """Recall on danger rows and false-alarm rate on safe rows, by language, language/variant,
    kind and form; ``all`` and ``suicide`` overall."""
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"danger": [], "safe": []})
    for r in results:
        hit = int(r["detected"])
        keys = ["all", f"lang:{r['language']}", f"variant:{r['language']}/{r['variant']}"]
        if r["label"] == "danger":
            keys += [f"kind:{r['kind']}", f"form:{r['form']}"]
        else:
            keys += [f"safe:{r['kind']}"]
        for key in keys:
            groups[key][r["label"]].append(hit)
    summary = {}
    for key, g in groups.items():
        summary[key] = {
            "n_danger": len(g["danger"]),
            "recall": sum(g["danger"]) / len(g["danger"]) if g["danger"] else None,
            "n_safe": len(g["safe"]),
            "false_alarms": sum(g["safe"]) / len(g["safe"]) if g["safe"] else None,
        }
    return summary
