"""Config primitives every typed settings model shares: YAML files read into pydantic
models, validation errors that name the flag or the field, comma-separated lists, and the
on-by-default switches read from the environment.

The models themselves live with their concern (data.config, validation.suites,
training.config, evaluation.config, export.config, pipeline.params).
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from slmops.errors import ConfigError


class SettingsModel(BaseModel):
    """Base of the settings models a trigger, a flag or a file fills: unknown keys are
    refused, numbers must be finite (inf and nan are not JSON, and a gate of inf passes
    everything) and a boolean is not a number (pydantic would read true as 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            kinds = _plain_types(cls.model_fields[info.field_name].annotation)
            if kinds & {int, float} and bool not in kinds:
                raise ValueError(f"{value} is a boolean; give a number")
        return value


def _plain_types(annotation: Any) -> set:
    """``int | None`` -> {int, NoneType}; other annotations as themselves."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {arg for arg in typing.get_args(annotation)}
    return {annotation}


def split_commas(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]`` for list settings typed as one flag or form field."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        value = [str(item).strip() for item in value if str(item).strip()]
        return value or None
    return value


def switched_off(env: str) -> bool:
    """Whether the on-by-default behaviour named by environment variable ``env`` is turned
    off (``0``, ``false``, ``no`` or ``off``; unset or anything else leaves it on)."""
    return os.environ.get(env, "1").strip().lower() in {"0", "false", "no", "off"}


def describe_validation_error(
    exc: ValidationError,
    *,
    source: str | None,
    flag_style: bool,
    file_keys: set[str] | None = None,
) -> str:
    """One line per problem, naming the flag (``--eval_fraction``) or the YAML field.

    With ``file_keys`` (flags overlaid on a file), a problem with a key that came from the
    file names ``source: key`` and one that came from a flag names ``--key``.
    """
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not where:
            lines.append(message)
        elif file_keys is not None:
            from_file = error["loc"][0] in file_keys
            lines.append(f"{source}: {where}: {message}" if from_file else f"--{where}: {message}")
        elif flag_style:
            lines.append(f"--{where}: {message}")
        else:
            lines.append(f"{where}: {message}")
    prefix = f"{source}: " if source and file_keys is None else ""
    return prefix + "; ".join(lines)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML settings file; errors name the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return raw


def load_yaml_model(path: Path, model: type[BaseModel]) -> Any:
    """Read one YAML file into ``model``; errors name the file and the field."""
    raw = read_yaml_mapping(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        message = describe_validation_error(exc, source=str(path), flag_style=False)
        raise ConfigError(message) from None
