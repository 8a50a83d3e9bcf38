"""Rasa component: identifies the language of each message (see ``nlu.langid``).

Sets ``language`` (a locale pack code) and ``language_confidence`` on the message; both are in
the parse result, so the dialogue can keep a conversation's language sticky and only switch on a
confident message (see ``bot.language.sticky_language``).
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

from bot import locale_packs
from nlu.components.pack_trained import PackTrainedComponent
from nlu.langid import FALLBACK_LANGUAGE, LanguageIdentifier
from nlu.script import normalize

logger = logging.getLogger(__name__)

LANGUAGE = "language"
LANGUAGE_CONFIDENCE = "language_confidence"


def pack_examples(locales_dir: Path | str) -> list[tuple[str, str]]:
    """``(normalised text, language code)`` for every training example of every pack."""
    pairs = []
    for pack in locale_packs.discover(locales_dir):
        for ex in locale_packs.read_examples(pack.nlu_files):
            pairs.append((normalize(ex.text)[0], pack.code))
    return pairs


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=True)
class LanguageIdentifierComponent(PackTrainedComponent[LanguageIdentifier]):
    """Trains on the locale packs' examples; tags each message with its language."""

    MODEL_FILE = "langid.json"
    MODEL_CLASS = LanguageIdentifier

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            # Where the locale packs are; relative paths are relative to the working directory.
            "locales_dir": "locales",
            "fallback_language": FALLBACK_LANGUAGE,
        }

    def train(self, training_data: TrainingData) -> Resource:
        # The packs, not the merged training data, know which example is in which language.
        # ``training_data`` is still an input, so Rasa retrains when any example changes.
        locales_dir = self._config["locales_dir"]
        pairs = pack_examples(locales_dir)
        packs = locale_packs.discover(locales_dir)
        identifier = LanguageIdentifier.train(
            pairs,
            self._config["fallback_language"],
            priors={p.code: float(p.meta.get("langid_prior", 1.0)) for p in packs},
            defers_to={
                p.code: p.meta["langid_defers_to"] for p in packs if p.meta.get("langid_defers_to")
            },
        )
        logger.info(
            "language identifier: %d examples; scripts decided by rule: %s; classifiers: %s",
            len(pairs),
            identifier.script_language,
            sorted(identifier.classifiers),
        )
        return self.persist(identifier)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str) or self.model is None:
                continue
            guess = self.model.identify(text)
            message.set(LANGUAGE, guess.language, add_to_output=True)
            message.set(LANGUAGE_CONFIDENCE, round(guess.confidence, 4), add_to_output=True)
        return messages
