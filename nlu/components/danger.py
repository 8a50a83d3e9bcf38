"""Rasa component: a danger assessment on every message (see ``nlu.danger``).

Sets ``danger`` (0..1), ``danger_kind`` (a taxonomy danger kind or None) and ``danger_weak`` (a
weak signal: hopelessness, a farewell) on the message; all three are in the parse result, so
every action, whatever the dialogue state, reads them (``actions.dialogue.Turn.danger``). What
it learns is stored as JSON, not pickled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu import danger

logger = logging.getLogger(__name__)

DANGER = "danger"
DANGER_KIND = "danger_kind"
DANGER_WEAK = "danger_weak"
MODEL_FILE = "danger.json"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=True)
class DangerDetectorComponent(GraphComponent):
    """Trains on the locale packs' danger lexicons and examples; assesses each message."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "locales_dir": "locales",
            "threshold": danger.THRESHOLD,
            "weak_threshold": danger.WEAK_THRESHOLD,
            "lexicon_floor": danger.LEXICON_FLOOR,
        }

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        detector: danger.DangerDetector | None = None,
    ) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self.detector = detector

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> DangerDetectorComponent:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        # The packs' danger.yml files are not Rasa training data: read from the packs, like the
        # language identifier (``helpline train`` hashes them into the model's name).
        self.detector = danger.train_from_packs(
            self._config["locales_dir"],
            float(self._config["threshold"]),
            float(self._config["weak_threshold"]),
            float(self._config["lexicon_floor"]),
        )
        logger.info(
            "danger detector: %d features, %d lexicon phrases",
            len(self.detector.features),
            sum(len(v) for v in self.detector.lexicon.phrases.values()),
        )
        with self._model_storage.write_to(self._resource) as path:
            self.detector.save(Path(path) / MODEL_FILE)
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> DangerDetectorComponent:
        with model_storage.read_from(resource) as path:
            detector = danger.DangerDetector.load(Path(path) / MODEL_FILE)
        return cls(config, model_storage, resource, detector)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if self.detector is None or not isinstance(text, str):
                continue
            result = self.detector.assess(text, message.get("language"))
            message.set(DANGER, round(result.score, 4), add_to_output=True)
            message.set(DANGER_KIND, result.kind if result.danger else None, add_to_output=True)
            message.set(DANGER_WEAK, result.weak, add_to_output=True)
        return messages
