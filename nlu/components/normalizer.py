"""Rasa component: script normalisation, the first step of the pipeline (see ``nlu.script``).

The text as the worker typed it is kept in the message under ``original_text``; when Zawgyi was
converted, ``script_conversion`` says so. It also drops the slashes a message starts with, so
that Rasa's ``RegexMessageHandler`` (the last step of every Rasa model, after this pipeline)
never reads a worker's ``/emergency`` or ``/affirm{"case_ref": ...}`` as an intent given
outright, nor ``/restart`` as an order to wipe the conversation: whatever the entry (the
channels' queue, the REST channel, the simulator, ``/model/parse``), the text passes here.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.script import DEFAULT_ZAWGYI_THRESHOLD, normalize

ORIGINAL_TEXT = "original_text"
SCRIPT_CONVERSION = "script_conversion"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class ScriptNormalizer(GraphComponent):
    """Rasa component: NFC, Zawgyi to Unicode, invisible characters, native digits, no
    ``/intent`` shortcut."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"zawgyi_threshold": DEFAULT_ZAWGYI_THRESHOLD}

    def __init__(self, config: dict[str, Any]) -> None:
        self.threshold = float(config["zawgyi_threshold"])

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> ScriptNormalizer:
        return cls(config)

    def _normalize_message(self, message: Message) -> None:
        text = message.get(TEXT)
        if not isinstance(text, str) or message.get(ORIGINAL_TEXT) is not None:
            return
        normalized, conversion = normalize(text, self.threshold)
        message.set(ORIGINAL_TEXT, text, add_to_output=True)
        message.set(SCRIPT_CONVERSION, conversion or None, add_to_output=bool(conversion))
        message.set(TEXT, normalized)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for message in training_data.training_examples:
            # Annotated entity offsets refer to the raw text; training data is written in
            # Unicode NFC already, so only examples that really change are touched.
            text = message.get(TEXT)
            if isinstance(text, str) and normalize(text, self.threshold)[0] != text:
                if message.get("entities"):
                    continue
                self._normalize_message(message)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            self._normalize_message(message)
        return messages
