"""Rasa component: whole-message commands (see ``nlu.commands``), after the classifier.

A bare number becomes intent ``help`` with ``choice`` set (the dialogue reads it against the menu it
last showed); a bare case reference becomes ``case_status``; a pack's command word (``skip``,
``cancel``, ``erase``) becomes ``help`` with ``command`` set. Both keys are in the parse result.
Anything else is left exactly as the classifier (and the fallback classifier) decided.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot import locale_packs
from nlu.commands import CommandWords
from nlu.components.pack_trained import PackTrainedComponent

CHOICE = "choice"
COMMAND = "command"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class CommandRecognizer(PackTrainedComponent[CommandWords]):
    MODEL_FILE = "commands.json"
    MODEL_CLASS = CommandWords

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"locales_dir": "locales"}

    def train(self, training_data: TrainingData) -> Resource:
        return self.persist(
            CommandWords.from_packs(locale_packs.discover(self._config["locales_dir"]))
        )

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str) or self.model is None:
                continue
            found = self.model.match(text)
            if not found:
                continue
            intent = "case_status" if "case_ref" in found else "help"
            message.set(INTENT, {"name": intent, "confidence": 1.0}, add_to_output=True)
            if CHOICE in found:
                message.set(CHOICE, found[CHOICE], add_to_output=True)
            if COMMAND in found:
                message.set(COMMAND, found[COMMAND], add_to_output=True)
        return messages
