"""Pydantic's validation errors as :class:`~fedcl.errors.ConfigError`: the key, the value, what is allowed.

An unknown key names its close matches and the keys known at that level; a value that
breaks a constraint prints the field's ``description`` (the schema's words for what is
allowed) rather than pydantic's generic message.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from fedcl.errors import ConfigError


def unknown_key(key: str, value: Any, known: list[str]) -> ConfigError:
    """The error for a key the schema does not have, with close matches."""
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return ConfigError(key, value, f"unknown key; {hint}known keys here: {sorted(known)}")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every BaseModel inside an annotation (``X | None``, unions, ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def _branch(annotation: Any, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model an annotation holds; for a tagged union, the member whose ``name`` literal is in ``loc``."""
    models = _models_in(annotation)
    for m in models:
        name = m.model_fields.get("name")
        tags = typing.get_args(name.annotation) if name is not None else ()
        if any(p in tags for p in loc if isinstance(p, str)):
            return m
    return models[0] if models else None


def _has_mapping(annotation: Any) -> bool:
    """Whether an annotation holds a free mapping (``dict[str, Any]``), whose keys are part of a config key."""
    if typing.get_origin(annotation) is dict or annotation is dict:
        return True
    return any(_has_mapping(a) for a in typing.get_args(annotation))


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[list[str], Any, type[BaseModel] | None]:
    """Key parts, field info and the innermost model along ``loc`` (union tags and list indices skipped)."""
    parts: list[str] = []
    info: Any = None
    current: type[BaseModel] | None = model
    for p in loc:
        if isinstance(p, int):
            continue  # an item of a list: the key is the list's (its value shows the item)
        elif current is None and info is not None and not _has_mapping(info.annotation):
            continue  # the member of a plain union ('constrained-float' in float | list[float])
        elif current is None:
            parts.append(p)  # inside a free mapping
        elif p in current.model_fields:
            info = current.model_fields[p]
            parts.append(p)
            current = _branch(info.annotation, loc)
        # else: the tag of a discriminated union ('fot'): not part of the key
    return parts, info, current


def as_config_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> ConfigError:
    """The first error of ``exc`` (raised validating ``model``) as a :class:`ConfigError`."""
    err = exc.errors(include_url=False)[0]
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, ConfigError):  # raised by a validator of ours: it already names the key
        return inner
    loc = tuple(err["loc"])
    head = [prefix] if prefix else []
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        parts, _, parent = _walk(model, loc[:-1])
        known = list(parent.model_fields) if parent is not None else []
        return unknown_key(".".join([*head, *parts, str(loc[-1])]), value, known)
    parts, info, _ = _walk(model, loc)
    key = ".".join([*head, *parts])
    if err["type"] == "missing":
        return ConfigError(key, "(missing)", "this key is required; see simulations/conf")
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        # an optional block says what it takes (stream.normalize: "null or {mean: [...], std: [...]}")
        return ConfigError(key, value, getattr(info, "description", None)
                           or "a mapping (this section is required; see simulations/conf)")
    if err["type"] == "union_tag_invalid":  # an unknown name of a group option (model.name, strategy.name)
        tag = str(err.get("ctx", {}).get("discriminator", "name")).strip("'")
        return ConfigError(f"{key}.{tag}", err.get("ctx", {}).get("tag"), err["msg"])
    allowed = getattr(info, "description", None) or err["msg"]
    return ConfigError(key, value, allowed)
