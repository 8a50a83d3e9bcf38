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

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu import danger
from nlu.components.pack_trained import PackTrainedComponent

logger = logging.getLogger(__name__)

DANGER = "danger"
DANGER_KIND = "danger_kind"
DANGER_WEAK = "danger_weak"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=True)
class DangerDetectorComponent(PackTrainedComponent[danger.DangerDetector]):
    """Trains on the locale packs' danger lexicons and examples; assesses each message."""

    MODEL_FILE = "danger.json"

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "locales_dir": "locales",
            "threshold": danger.THRESHOLD,
            "weak_threshold": danger.WEAK_THRESHOLD,
            "lexicon_floor": danger.LEXICON_FLOOR,
        }

    @staticmethod
    def save_model(model: danger.DangerDetector, path: Path) -> None:
        model.save(path)  # JSON, not a pickle

    @staticmethod
    def load_model(path: Path) -> danger.DangerDetector:
        model = danger.DangerDetector.load(path)
        if model.encoder is not None:  # load the encoder now, not on a worker's first message
            from nlu.embedding import Embedder

            Embedder.shared()
        return model

    def train(self, training_data: TrainingData) -> Resource:
        # The packs' danger.yml files are not Rasa training data: read from the packs, like the
        # language identifier (``helpline train`` hashes them into the model's name).
        detector = danger.train_from_packs(
            self._config["locales_dir"],
            float(self._config["threshold"]),
            float(self._config["weak_threshold"]),
            float(self._config["lexicon_floor"]),
        )
        logger.info(
            "danger detector: %d features, %d lexicon phrases",
            len(detector.features),
            sum(len(v) for v in detector.lexicon.phrases.values()),
        )
        return self.persist(detector)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if self.model is None or not isinstance(text, str):
                continue
            result = self.model.assess(text, message.get("language"))
            message.set(DANGER, round(result.score, 4), add_to_output=True)
            message.set(DANGER_KIND, result.kind if result.danger else None, add_to_output=True)
            message.set(DANGER_WEAK, result.weak, add_to_output=True)
        return messages
