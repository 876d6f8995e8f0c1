"""Stream sections as a run composes them: ``simulations/conf/stream/<option>.yaml`` with its defaults, validated."""

from __future__ import annotations

import copy
import functools
from typing import Any

from fedcl.config import compose_dict, validate_section
from fedcl.config.schema import Stream as StreamConfig
from fedcl.data.catalog import check_stream


@functools.cache
def _raw(option: str) -> dict[str, Any]:
    return compose_dict([f"stream={option}"])["stream"]  # type: ignore[no-any-return]


def stream_raw(option: str, **fields: Any) -> dict[str, Any]:
    """The plain ``stream`` section of ``stream=<option>`` with ``fields`` replaced (not validated)."""
    raw = copy.deepcopy(_raw(option))
    raw.update(fields)
    return raw


def stream_config(option: str, **fields: Any) -> StreamConfig:
    """The validated ``stream`` section of ``stream=<option>`` with ``fields`` replaced."""
    stream: StreamConfig = validate_section(StreamConfig, stream_raw(option, **fields), "stream")
    check_stream(stream)  # the stream rules a whole config's validator applies
    return stream
