"""Base for components that learn from the locale packs and keep what they learnt in the model.

What they learn is stored as JSON, with scikit-learn parts in skops files beside it: never as a
pickle. A model archive is a file someone could swap, and unpickling one runs whatever code it
holds; JSON and skops (which builds only the types it is told to trust) do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.exceptions import RasaException

T = TypeVar("T")


class Stored(Protocol):
    """A model that saves itself to a file (and files beside it) and loads from it."""

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Stored: ...


class OutdatedModelError(RasaException):
    """The model was stored by an older version of this code (as a pickle, which is never
    loaded): only retraining helps."""


class PackTrainedComponent(GraphComponent, Generic[T]):
    """Holds ``self.model`` (trained from the packs in ``locales_dir``), stored in ``MODEL_FILE``
    by ``MODEL_CLASS``'s ``save`` and ``load`` unless a subclass overrides ``save_model`` and
    ``load_model``."""

    MODEL_FILE: ClassVar[str]
    MODEL_CLASS: ClassVar[type[Stored]]

    @staticmethod
    def save_model(model: Any, path: Path) -> None:
        model.save(path)

    @classmethod
    def load_model(cls, path: Path) -> Any:
        return cls.MODEL_CLASS.load(path)

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
            stored = Path(path) / cls.MODEL_FILE
            if not stored.is_file():
                # e.g. model.joblib from before: a pickle, never opened
                raise OutdatedModelError(
                    f"{cls.__name__}: the model has no {cls.MODEL_FILE}; it was trained by an "
                    "older version, which stored a pickle (never loaded: it could run code). "
                    "Retrain it: helpline train --force"
                )
            model = cls.load_model(stored)
        return cls(config, model_storage, resource, model)
