"""Field types of the config schema: every constraint carries the words an error message shows.

``description`` is what a :class:`~fedcl.errors.ConfigError` prints as "allowed" when a
value breaks the constraint, so the schema is also the documentation of each key.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base of every config model: strict types (no "3" for 3, no true for 1), unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


PosInt = Annotated[int, Field(ge=1, description="an integer >= 1")]
NonNegInt = Annotated[int, Field(ge=0, description="an integer >= 0")]
PosNum = Annotated[float, Field(gt=0, description="a number > 0")]
NonNegNum = Annotated[float, Field(ge=0, description="a number >= 0")]
Prob = Annotated[float, Field(ge=0, le=1, description="a probability in [0, 1]")]
Fraction = Annotated[float, Field(ge=0, le=1, description="a number in [0, 1]")]
OpenFraction = Annotated[float, Field(gt=0, lt=1, description="a number in (0, 1)")]
Seconds = Annotated[float, Field(gt=0, description="seconds > 0")]
Flag = Annotated[bool, Field(description="true or false")]
