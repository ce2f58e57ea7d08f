"""Hyperparameter search for the ``slm_hpo`` DAG: the search file, its trials, the winner.

The file is the reference guide's ``hyperparameter-search.yaml``: a ``search_strategy``
(random or grid, ``num_trials``, ``seed``) and a ``search_space`` of float, int and choice
entries named after ``PipelineParams`` fields (or the guide's and Olive's short names:
``batch_size``, ``r``, ``lr``...). Each entry's bounds and values are checked against the
field itself when the file loads, so no trial can fail on a value the form would refuse.

This module reads the file and lists its trials; ``search_space`` holds the entry types
(their grid points and random draws), ``search_results`` ranks finished trials and
tabulates them. Both are re-exported here, the one API of the format.
"""

from __future__ import annotations

import difflib
import itertools
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from slmops.config import describe_validation_error, read_yaml_mapping
from slmops.errors import ConfigError
from slmops.pipeline.configs.search_results import best_trial, trials_table
from slmops.pipeline.configs.search_space import (
    MAX_TRIALS,
    Choice,
    FloatRange,
    IntRange,
    Parameter,
    draw,
    grid_points,
)
from slmops.pipeline.params import FORM_SECTIONS, PipelineParams, field_value

__all__ = [
    "ALIASES",
    "MAX_TRIALS",
    "SEARCHABLE",
    "Choice",
    "FloatRange",
    "IntRange",
    "Parameter",
    "SearchSpec",
    "SearchStrategy",
    "best_trial",
    "load_search",
    "trials",
    "trials_table",
]

_RETRIES = 100  # random draws per trial before a repeat of an earlier trial is kept

# Names the guide and Olive use, mapped to the field they set.
ALIASES = {
    "batch_size": "per_device_train_batch_size",
    "r": "lora_r",
    "alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "lr": "learning_rate",
}
# What a search may vary: the training numbers and the method; the rest stays as triggered.
_KINDS = {"method": "choice"} | {
    name: kind
    for name in FORM_SECTIONS["Training"]
    if (kind := {int: "int", float: "float"}.get(PipelineParams.model_fields[name].annotation))
}
SEARCHABLE = tuple(_KINDS)


class SearchStrategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["random", "grid"] = Field(description="random sampling or the full grid")
    num_trials: int | None = Field(
        None,
        ge=1,
        le=MAX_TRIALS,
        validate_default=True,
        description="random: trials to run (required); grid: the most trials allowed",
    )
    seed: int = Field(42, ge=0, description="seed of the random draws")

    @field_validator("num_trials")
    @classmethod
    def _random_needs_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("type") == "random":
            raise ValueError("random search needs num_trials (how many trials to run)")
        return value


class SearchSpec(BaseModel):
    """A search file; after validation ``search_space`` is keyed by PipelineParams field."""

    model_config = ConfigDict(extra="forbid")

    search_strategy: SearchStrategy
    search_space: dict[str, Parameter] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        space = data.get("search_space") if isinstance(data, dict) else None
        if isinstance(space, dict):
            seen: dict[str, str] = {}
            for name, entry in space.items():
                field = _field_of(str(name))
                kind = entry.get("type") if isinstance(entry, dict) else None
                if isinstance(entry, dict) and kind not in ("float", "int", "choice"):
                    raise ValueError(
                        f"search_space.{name}.type: {'missing' if kind is None else repr(kind)}; "
                        "give float, int or choice"
                    )
                if field in seen:
                    raise ValueError(
                        f"search_space.{name}: sets {field}, as search_space.{seen[field]} "
                        "does; keep one"
                    )
                seen[field] = name
        return data

    @model_validator(mode="after")
    def _check_values(self) -> SearchSpec:
        grid = self.search_strategy.type == "grid"
        self.search_space = {
            _field_of(name): _checked(_field_of(name), entry, f"search_space.{name}", grid)
            for name, entry in self.search_space.items()
        }
        if grid:
            counts = [len(grid_points(entry)) for entry in self.search_space.values()]
            size, cap = math.prod(counts), self.search_strategy.num_trials
            if size > (cap or MAX_TRIALS):
                limit = f"num_trials ({cap})" if cap else f"the limit of {MAX_TRIALS} trials"
                raise ValueError(
                    f"search_strategy.num_trials: the grid has {size} points "
                    f"({' x '.join(map(str, counts))}), more than {limit}; give fewer values"
                    + (" or raise num_trials" if cap else "")
                )
        return self


def _field_of(name: str) -> str:
    field = ALIASES.get(name, name)
    if field not in _KINDS:
        close = difflib.get_close_matches(name, [*SEARCHABLE, *ALIASES], n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(
            f"search_space.{name}: not a parameter a search can vary; {hint}searchable: "
            f"{', '.join(SEARCHABLE)} (also {', '.join(ALIASES)})"
        )
    return field


def _valid(field: str, value: Any, where: str) -> Any:
    """``value`` as PipelineParams holds it, or the field's own complaint."""
    try:
        return field_value(field, value)
    except ValidationError as exc:
        problems = "; ".join(error["msg"] for error in exc.errors())
        raise ValueError(f"{where}: {value!r} is not a valid {field}: {problems}") from None


def _checked(field: str, entry: Any, where: str, grid: bool) -> Any:
    kind = _KINDS[field]
    if kind == "choice" and not isinstance(entry, Choice):
        raise ValueError(f"{where}.type: {field} is a name; use type: choice with its values")
    if kind == "int" and isinstance(entry, FloatRange):
        raise ValueError(f"{where}.type: {field} is a whole number; use type: int or choice")
    if isinstance(entry, Choice):
        values = [_valid(field, value, f"{where}.values") for value in entry.values]
        if len(set(values)) < len(values):
            raise ValueError(f"{where}.values: lists the same {field} twice; list each once")
        return entry.model_copy(update={"values": values})
    _valid(field, entry.low, f"{where}.low")
    _valid(field, entry.high, f"{where}.high")
    if grid and isinstance(entry, FloatRange) and entry.num_values is None:
        raise ValueError(
            f"{where}.num_values: grid search needs num_values (how many evenly spaced "
            "points from low to high), or use type: choice"
        )
    if grid and isinstance(entry, IntRange) and entry.log:
        # Rounded log-spaced whole numbers collide and surprise; explicit values do not.
        raise ValueError(
            f"{where}.log: grid search does not space whole numbers on a log scale; "
            "list them instead, e.g. type: choice, values: [8, 16, 32, 64]"
        )
    return entry


def _untagged(exc: ValidationError) -> ValidationError:
    """The errors without the union tag pydantic adds to a location, so they name the
    field as written (``search_space.lr.low``, not ``search_space.lr.float.low``)."""
    details = []
    for error in exc.errors():
        loc = error["loc"]
        if len(loc) > 2 and loc[0] == "search_space" and loc[2] in ("float", "int", "choice"):
            loc = loc[:2] + loc[3:]
        details.append({"type": error["type"], "loc": loc, "input": error["input"]})
        if "ctx" in error:
            details[-1]["ctx"] = error["ctx"]
    try:
        return ValidationError.from_exception_data(exc.title, details)
    except (TypeError, KeyError, ValueError):
        return exc  # an error type that cannot be rebuilt: keep the tagged locations


def load_search(source: Path | str | Mapping[str, Any], *, name: str = "search") -> SearchSpec:
    """A search from a YAML file, or from a mapping (the trigger form's) called ``name``."""
    if isinstance(source, Mapping):
        raw, where = dict(source), name
    else:
        raw, where = read_yaml_mapping(Path(source)), str(source)
    try:
        return SearchSpec.model_validate(raw)
    except ValidationError as exc:
        message = describe_validation_error(_untagged(exc), source=where, flag_style=False)
        raise ConfigError(message) from None


def trials(spec: SearchSpec) -> list[dict[str, Any]]:
    """Each trial's PipelineParams overrides (field -> value), the same for the same seed."""
    names = list(spec.search_space)
    if spec.search_strategy.type == "grid":
        axes = [grid_points(entry) for entry in spec.search_space.values()]
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]
    rng = random.Random(spec.search_strategy.seed)
    chosen: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for _ in range(spec.search_strategy.num_trials or 0):
        for _ in range(_RETRIES):
            trial = {name: draw(entry, rng) for name, entry in spec.search_space.items()}
            key = tuple(trial.values())
            if key not in seen:
                break  # a small space may run out; then the last draw is kept, repeated
        seen.add(key)
        chosen.append(trial)
    return chosen
