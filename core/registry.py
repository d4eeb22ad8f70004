"""The model names a request can ask for, and the per-process set of loaded models behind them.

Names (option ``model``; CLI ``--model``, form/JSON field ``model``, ``remove(..., model=...)``):

- ``people``: MatteFlow's own people model (``default`` is an alias kept from version 1);
- ``general``: the salient-object model for products and objects (U^2-Net-p);
- ``auto`` (the default): the people model first; the photo stays with it when it has people in it, else the
  general model runs (:mod:`matteflow.core.autoselect`);
- ``ensemble``: both networks on every photo, their mattes combined where they agree on the subject, else
  ``auto``'s choice (:mod:`matteflow.core.ensemble`): the best quality, for both networks' cost.

The *deployment* decides which network serves each name (``MATTEFLOW_MODEL`` for ``people``,
``MATTEFLOW_GENERAL_MODEL`` for ``general``: a :func:`~matteflow.core.model.load_model` spec such as
``default`` or ``onnx:<path>``); the *request* decides which name runs. Each network is loaded once per
process, on first use, so a worker that never sees an object photo never loads the general model.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .errors import InvalidOptionError, shown

if TYPE_CHECKING:  # options (and so the web layer) import this module: no model code at import time
    from .model import MattingModel

PEOPLE = "people"
GENERAL = "general"
AUTO = "auto"
ENSEMBLE = "ensemble"
MODEL_NAMES = (AUTO, PEOPLE, GENERAL, ENSEMBLE)
MODEL_ALIASES = {"default": PEOPLE}
# What runs when a request names no model.
DEFAULT_MODEL = AUTO

log = logging.getLogger(__name__)


def parse_model_name(value: object) -> str:
    """A requested model name, normalised (``default`` -> ``people``); InvalidOptionError lists the names."""
    text = str(value).strip().lower() or DEFAULT_MODEL
    text = MODEL_ALIASES.get(text, text)
    if text not in MODEL_NAMES:
        names = ", ".join(MODEL_NAMES)
        raise InvalidOptionError(f"model must be one of {names} (or default = people), got {shown(value)}")
    return text


class ModelSet:
    """The networks behind ``people`` and ``general``, each built on first use and then shared (thread-safe).

    ``loaders`` maps a name to a function that builds its model (called at most once per name).
    """

    def __init__(self, loaders: Mapping[str, Callable[[], MattingModel]]) -> None:
        missing = {PEOPLE, GENERAL} - set(loaders)
        if missing:
            raise ValueError(f"a ModelSet needs loaders for {sorted(missing)}")
        self._loaders = dict(loaders)
        self._models: dict[str, MattingModel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_specs(
        cls, people: str = "default", general: str = "general", device: str = "auto", threads: int = 0
    ) -> ModelSet:
        """Models from :func:`~matteflow.core.model.load_model` specs, loaded lazily. The same spec for both
        names is one network (loaded once; ``auto`` then has nothing to choose between)."""
        from .model import load_model

        def people_loader() -> MattingModel:
            return load_model(people, device, threads=threads)

        def general_loader() -> MattingModel:
            return load_model(general, device, threads=threads)

        return cls({PEOPLE: people_loader, GENERAL: people_loader if general == people else general_loader})

    @classmethod
    def single(cls, model: MattingModel) -> ModelSet:
        """One network behind every name (an engine built around one model, as before named models)."""

        def loader() -> MattingModel:
            return model

        return cls({PEOPLE: loader, GENERAL: loader})

    def get(self, name: str) -> MattingModel:
        """The model behind ``people`` or ``general``, loading it on first use (ModelError if it cannot)."""
        if name not in self._loaders:
            raise KeyError(f"no model named {name!r}; known: {', '.join(sorted(self._loaders))}")
        model = self._models.get(name)
        if model is None:
            with self._lock:  # one load even when several threads ask at once
                model = self._models.get(name)
                if model is None:
                    started = time.perf_counter()
                    loader = self._loaders[name]
                    model = loader()
                    for other, other_loader in self._loaders.items():  # names that share the network
                        if other_loader is loader:
                            self._models[other] = model
                    log.info(
                        "pid %s loaded model %s (%s) on %s in %.2fs",
                        os.getpid(),
                        name,
                        model.name,
                        model.device,
                        time.perf_counter() - started,
                    )
        return model

    def loaded(self) -> dict[str, MattingModel]:
        """The models loaded so far, by name."""
        return dict(self._models)

    @property
    def is_single(self) -> bool:
        """True when both names are the very same network (then ``auto`` need not choose)."""
        return self._loaders[PEOPLE] is self._loaders[GENERAL]
