"""Hyperparameter search for the ``slm_hpo`` DAG: the search file, its trials, the winner.

The file is the reference guide's ``hyperparameter-search.yaml``: a ``search_strategy``
(random or grid, ``num_trials``, ``seed``) and a ``search_space`` of float, int and choice
entries named after ``PipelineParams`` fields (or the guide's and Olive's short names:
``batch_size``, ``r``, ``lr``...). Each entry's bounds and values are checked against the
field itself when the file loads, so no trial can fail on a value the form would refuse.
"""

from __future__ import annotations

import difflib
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

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
from slmops.errors import ConfigError, SearchError
from slmops.pipeline.params import FORM_SECTIONS, PipelineParams

MAX_TRIALS = 1000  # each trial is a whole fine-tune; more is a typo, not a plan
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
            counts = [len(_points(entry)) for entry in self.search_space.values()]
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
        return getattr(PipelineParams.model_validate({field: value}), field)
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


def _rounded(value: float, low: float, high: float) -> float:
    # Six significant digits read well in the trials table; rounding stays within bounds.
    return min(max(float(f"{value:.6g}"), low), high)


def _points(entry: Any) -> Sequence:
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


def _draw(entry: Any, rng: random.Random) -> Any:
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


def trials(spec: SearchSpec) -> list[dict[str, Any]]:
    """Each trial's PipelineParams overrides (field -> value), the same for the same seed."""
    names = list(spec.search_space)
    if spec.search_strategy.type == "grid":
        axes = [_points(entry) for entry in spec.search_space.values()]
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]
    rng = random.Random(spec.search_strategy.seed)
    chosen: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for _ in range(spec.search_strategy.num_trials or 0):
        for _ in range(_RETRIES):
            trial = {name: _draw(entry, rng) for name, entry in spec.search_space.items()}
            key = tuple(trial.values())
            if key not in seen:
                break  # a small space may run out; then the last draw is kept, repeated
        seen.add(key)
        chosen.append(trial)
    return chosen


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


def best_trial(results: list[dict], metric: str, *, lower_is_better: bool = False) -> int:
    """The ``index`` of the best finished trial; ties go to the lower eval_loss, then index."""
    usable = [
        r for r in results if r.get("status") == "ok" and _number(r.get("metric")) is not None
    ]
    if not usable:
        failed = sum(r.get("status") != "ok" for r in results)
        raise SearchError(
            f"no trial finished with {metric} measured: {failed} of {len(results)} failed and "
            f"{len(results) - failed} reported none; see each trial's error in the report"
        )
    sign = 1 if lower_is_better else -1

    def rank(result: dict) -> tuple:
        loss = _number(result.get("eval_loss"))
        return (sign * result["metric"], math.inf if loss is None else loss, result["index"])

    return min(usable, key=rank)["index"]


def _cell(value: Any, spec: str = "g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def trials_table(
    results: list[dict], metric: str, *, lower_is_better: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (strings, by trial) for the report; the best trial has ``*``."""
    params = list(dict.fromkeys(name for r in results for name in r.get("params", {})))
    try:
        best = best_trial(results, metric, lower_is_better=lower_is_better)
    except SearchError:
        best = None
    headers = ["trial", *params, metric, "eval_loss", "status", "best"]
    rows = []
    for r in sorted(results, key=lambda r: r["index"]):
        status = r.get("status", "failed")
        if status != "ok" and r.get("error"):
            status = f"{status}: {str(r['error']).splitlines()[0][:80]}"
        rows.append(
            [
                str(r["index"]),
                *(_cell(r.get("params", {}).get(name)) for name in params),
                _cell(r.get("metric"), ".4f"),
                _cell(r.get("eval_loss"), ".4f"),
                status,
                "*" if r["index"] == best else "",
            ]
        )
    return headers, rows
