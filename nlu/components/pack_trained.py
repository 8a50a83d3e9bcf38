"""Base for components that learn from the locale packs and keep what they learnt in the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, TypeVar

import joblib
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage

T = TypeVar("T")


class PackTrainedComponent(GraphComponent, Generic[T]):
    """Holds ``self.model`` (trained from the packs in ``locales_dir``), persisted with joblib
    unless a subclass overrides ``MODEL_FILE``, ``save_model`` and ``load_model``."""

    MODEL_FILE = "model.joblib"

    @staticmethod
    def save_model(model: Any, path: Path) -> None:
        joblib.dump(model, path)

    @staticmethod
    def load_model(path: Path) -> Any:
        return joblib.load(path)

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        model: T | None = None,
    ) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self.model = model

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> PackTrainedComponent:
        return cls(config, model_storage, resource)

    def persist(self, model: T) -> Resource:
        self.model = model
        with self._model_storage.write_to(self._resource) as path:
            self.save_model(model, Path(path) / self.MODEL_FILE)
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> PackTrainedComponent:
        with model_storage.read_from(resource) as path:
            model = cls.load_model(Path(path) / cls.MODEL_FILE)
        return cls(config, model_storage, resource, model)
