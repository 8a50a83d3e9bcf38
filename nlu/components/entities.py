"""Rasa component: ``country``, ``language`` and ``case_ref`` entities (see ``nlu.gazetteer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot import locale_packs
from nlu.gazetteer import Gazetteer, tokens

_MODEL_FILE = "gazetteer.joblib"


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
class GazetteerEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Finds countries and languages by the names every pack lists, and case references."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"locales_dir": "locales"}

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        gazetteer: Gazetteer | None = None,
    ) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self.gazetteer = gazetteer

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> GazetteerEntityExtractor:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        packs = locale_packs.discover(self._config["locales_dir"])
        self.gazetteer = Gazetteer.from_packs(packs, common_words(training_data))
        with self._model_storage.write_to(self._resource) as path:
            joblib.dump(self.gazetteer, Path(path) / _MODEL_FILE)
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> GazetteerEntityExtractor:
        with model_storage.read_from(resource) as path:
            gazetteer = joblib.load(Path(path) / _MODEL_FILE)
        return cls(config, model_storage, resource, gazetteer)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str) or self.gazetteer is None:
                continue
            found = self.add_extractor_name(self.gazetteer.extract(text))
            message.set(ENTITIES, message.get(ENTITIES, []) + found, add_to_output=True)
        return messages
