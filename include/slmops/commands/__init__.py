"""Subcommands of the ``slmops`` CLI, one module each (see ``slmops.cli``).

``add_config_arguments`` / ``config_from_args`` turn a pydantic config into flags and
back, so a flag, a YAML key and a DAG Param share one name, type, range and description.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def log_to_stderr(message: str) -> None:
    """Progress for a person at the terminal; stdout stays for results."""
    print(message, file=sys.stderr, flush=True)


def add_config_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], title: str
) -> None:
    """One ``--field`` per config field; unset flags stay None so defaults live in one place."""
    group = parser.add_argument_group(title)
    for name, info in model.model_fields.items():
        help_text = (info.description or "").replace("%", "%%")
        if info.default not in (None, False) and not callable(info.default_factory):
            help_text += f" (default: {info.default})"
        kind = _scalar_type(info.annotation)
        if kind is bool:
            group.add_argument(f"--{name}", action="store_true", default=None, help=help_text)
        else:
            group.add_argument(f"--{name}", type=kind, default=None, help=help_text)


def config_from_args(model: type[BaseModel], args: argparse.Namespace, **extra: Any) -> Any:
    """Build ``model`` from the flags that were given; errors name the flag."""
    from slmops.config import ConfigError, describe_validation_error

    values = {
        name: getattr(args, name)
        for name in model.model_fields
        if getattr(args, name, None) is not None
    }
    values.update(extra)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source=None, flag_style=True)) from None


def _scalar_type(annotation: Any) -> type:
    """int / float / bool / str from ``int | None``, ``list[str] | None``..."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = options[0]
    if annotation in (int, float, bool):
        return annotation
    return str  # strings, and lists given comma-separated
