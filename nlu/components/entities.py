"""Rasa component: ``country``, ``language`` and ``case_ref`` entities (see ``nlu.gazetteer``)."""

from __future__ import annotations

from typing import Any

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot import locale_packs
from nlu.components.pack_trained import PackTrainedComponent
from nlu.gazetteer import Gazetteer, tokens


def common_words(training_data: TrainingData) -> set[str]:
    """Tokens of the training examples outside their entity annotations."""
    words: set[str] = set()
    for message in training_data.intent_examples:
        text = message.get(TEXT) or ""
        for ent in sorted(message.get(ENTITIES) or [], key=lambda e: -e["start"]):
            text = text[: ent["start"]] + " " + text[ent["end"] :]
        words.update(tokens(text))
    return words


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=True)
class GazetteerEntityExtractor(PackTrainedComponent[Gazetteer], EntityExtractorMixin):
    """Finds countries and languages by the names every pack lists, and case references."""

    MODEL_FILE = "gazetteer.json"
    MODEL_CLASS = Gazetteer

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"locales_dir": "locales"}

    def train(self, training_data: TrainingData) -> Resource:
        packs = locale_packs.discover(self._config["locales_dir"])
        return self.persist(Gazetteer.from_packs(packs, common_words(training_data)))

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str) or self.model is None:
                continue
            found = self.add_extractor_name(self.model.extract(text))
            message.set(ENTITIES, message.get(ENTITIES, []) + found, add_to_output=True)
        return messages
