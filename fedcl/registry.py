"""One way to name a component: a registry of ``name -> "module:Class"``, imported on first use.

Every pluggable kind (local methods, models, strategies, schedules, unlearning methods)
has one :class:`Registry`; its names are the options of the Hydra group of the same
name (``method=ewc`` is ``simulations/conf/method/ewc.yaml`` is ``fedcl/methods/ewc.py``
is class ``EWC``). Entries are import paths, so a registry costs nothing until a
component is used and never creates an import cycle.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar

from fedcl.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Component classes of one kind by name.

    Parameters
    ----------
    key : str
        The config key that names a component of this kind (``method``, ``strategy.name``),
        used in error messages.
    entries : Mapping[str, str]
        ``name -> "package.module:ClassName"``.
    """

    def __init__(self, key: str, entries: Mapping[str, str]) -> None:
        self.key = key
        self._entries = dict(entries)
        self._loaded: dict[str, type[T]] = {}

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> type[T]:
        """The class registered under ``name`` (a :class:`ConfigError` with close matches if none)."""
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ConfigError(self.key, name, f"{hint}choose one of {self.names()}")
        if name not in self._loaded:
            module, cls_name = self._entries[name].split(":")
            self._loaded[name] = getattr(importlib.import_module(module), cls_name)
        return self._loaded[name]
