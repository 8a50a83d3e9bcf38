"""Rasa's ``LogisticRegressionClassifier``, its weights laid out for one message at a time.

Trained, stored (skops) and run exactly as Rasa's: only the loaded weights' memory order changes
(``nlu.weights``), which saves Rasa's classifier a copy of all its weights on every message.
A message with nothing to read (only spaces, control or invisible characters: no token, so no
feature) gets no intent, where Rasa's classifier raises and the worker's queue would retry it;
the ``FallbackClassifier`` after it then answers ``nlu_fallback`` (the menu, asked again).
"""

from __future__ import annotations

from typing import Any

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from nlu.weights import lay_out


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class IntentClassifier(LogisticRegressionClassifier):
    """``LogisticRegressionClassifier`` whose loaded weights need no copy a message."""

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> IntentClassifier:
        component = super().load(*args, **kwargs)
        lay_out(getattr(component, "clf", None))
        return component

    def process(self, messages: list[Message]) -> list[Message]:
        readable = []
        for message in messages:
            if _has_features(message):
                readable.append(message)
            else:
                message.set("intent", {"name": None, "confidence": 0.0}, add_to_output=True)
                message.set("intent_ranking", [], add_to_output=True)
        if readable:
            super().process(readable)
        return messages


def _has_features(message: Message) -> bool:
    sparse = message.get_sparse_features(attribute=TEXT)[1]
    dense = message.get_dense_features(attribute=TEXT)[1]
    return sparse is not None or dense is not None
