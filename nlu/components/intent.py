"""Rasa's ``LogisticRegressionClassifier``, its weights laid out for one message at a time.

Trained, stored (skops) and run exactly as Rasa's: only the loaded weights' memory order changes
(``nlu.weights``), which saves Rasa's classifier a copy of all its weights on every message.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier

from nlu.weights import lay_out


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class IntentClassifier(LogisticRegressionClassifier):
    """``LogisticRegressionClassifier`` whose loaded weights need no copy a message."""

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> IntentClassifier:
        component = super().load(*args, **kwargs)
        lay_out(getattr(component, "clf", None))
        return component
