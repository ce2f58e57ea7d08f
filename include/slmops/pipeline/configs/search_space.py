"""The entries of a ``search_space`` (float ranges, int ranges and choices): their shape
as the search file writes it, the points a grid search takes from each, and the values a
random search draws."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_TRIALS = 1000  # each trial is a whole fine-tune; more is a typo, not a plan


def _above_low(high: float, info: ValidationInfo) -> float:
    low = info.data.get("low")
    if low is not None and high <= low:
        raise ValueError(f"must be above low ({low:g}), got {high:g}")
    return high


def _log_needs_positive_low(log: bool, info: ValidationInfo) -> bool:
    low = info.data.get("low")
    if log and low is not None and low <= 0:
        raise ValueError(f"needs low above 0 (got {low:g}); raise low or set log: false")
    return log


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["float"]
    low: float = Field(description="smallest value (numeric strings such as 1e-6 are read)")
    high: float = Field(description="largest value")
    log: bool = Field(False, description="sample (or space grid points) evenly in log space")
    num_values: int | None = Field(
        None, ge=2, le=MAX_TRIALS, description="grid search: points from low to high, both ends"
    )

    _high = field_validator("high")(_above_low)
    _log = field_validator("log")(_log_needs_positive_low)


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["int"]
    low: int = Field(description="smallest value")
    high: int = Field(description="largest value (included)")
    step: int = Field(1, ge=1, description="distance between values, from low")
    log: bool = Field(False, description="random search: sample evenly in log space")

    _high = field_validator("high")(_above_low)

    @field_validator("log")
    @classmethod
    def _check_log(cls, log: bool, info: ValidationInfo) -> bool:
        if log and info.data.get("step", 1) != 1:
            raise ValueError("takes no step; drop the step or set log: false")
        return _log_needs_positive_low(log, info)


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["choice"]
    values: list[bool | int | float | str] = Field(min_length=1, description="values to try")

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list) -> list:
        for i, value in enumerate(values):
            if value in values[:i]:
                raise ValueError(f"{value!r} is listed twice; list each value once")
        return values


Parameter = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


def _rounded(value: float, low: float, high: float) -> float:
    # Six significant digits read well in the trials table; rounding stays within bounds.
    return min(max(float(f"{value:.6g}"), low), high)


def grid_points(entry: Any) -> Sequence:
    """The values a grid search takes from ``entry``, both ends included."""
    if isinstance(entry, Choice):
        return list(entry.values)
    if isinstance(entry, IntRange):
        return range(entry.low, entry.high + 1, entry.step)  # counted without listing it
    low, high, n = entry.low, entry.high, entry.num_values
    if entry.log:
        low_log, high_log = math.log(low), math.log(high)
        inner = [math.exp(low_log + (high_log - low_log) * i / (n - 1)) for i in range(1, n - 1)]
    else:
        inner = [low + (high - low) * i / (n - 1) for i in range(1, n - 1)]
    return [low, *(_rounded(value, low, high) for value in inner), high]


def draw(entry: Any, rng: random.Random) -> Any:
    """One random value of ``entry``, within its bounds."""
    if isinstance(entry, Choice):
        return rng.choice(entry.values)
    if isinstance(entry, IntRange):
        if not entry.log:
            return rng.randrange(entry.low, entry.high + 1, entry.step)
        # Half a unit beyond each end gives the end values their full share (as Optuna does).
        value = math.exp(rng.uniform(math.log(entry.low - 0.5), math.log(entry.high + 0.5)))
        return min(max(round(value), entry.low), entry.high)
    if entry.log:
        value = math.exp(rng.uniform(math.log(entry.low), math.log(entry.high)))
    else:
        value = rng.uniform(entry.low, entry.high)
    return _rounded(value, entry.low, entry.high)
