"""Subcommands of the ``slmops`` CLI, one module each (see ``slmops.cli``).

``add_config_arguments`` / ``config_from_args`` turn a pydantic config into flags and
back, so a flag, a YAML key and a DAG Param share one name, type, range and description.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def log_to_stderr(message: str) -> None:
    """Progress for a person at the terminal; stdout stays for results."""
    print(message, file=sys.stderr, flush=True)


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """Olive's ``--log_level`` (0 debug ... 4 critical): 2 and above silence progress."""
    parser.add_argument(
        "--log_level",
        type=int,
        choices=range(5),
        default=1,
        help="0-1: progress on stderr (default 1); 2-4: warnings and errors only, as Olive",
    )


def log_for(args: argparse.Namespace):
    """The progress printer ``--log_level`` asks for."""
    from slmops.progress import no_log

    return log_to_stderr if getattr(args, "log_level", 1) < 2 else no_log


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_bool(text: str) -> bool:
    """``--flag``, ``--flag true`` and ``--flag false`` all work, as in Olive's examples."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    title: str,
    *,
    short: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """One ``--field`` per config field; unset flags stay None so defaults live in one place.

    ``short`` adds aliases such as ``{"output_path": "-o"}``.
    """
    group = parser.add_argument_group(title)
    short = short or {}
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        help_text = (info.description or "").replace("%", "%%")
        if (
            not info.is_required()
            and info.default not in (None, False)
            and not callable(info.default_factory)
        ):
            help_text += f" (default: {info.default})"
        if info.is_required():
            help_text += " (required)"
        flags = [short[name], f"--{name}"] if name in short else [f"--{name}"]
        kind = _scalar_type(info.annotation)
        if kind is bool:
            group.add_argument(
                *flags, type=parse_bool, nargs="?", const=True, default=None, help=help_text
            )
        else:
            choices = _choices(info.annotation)
            group.add_argument(*flags, type=kind, choices=choices, default=None, help=help_text)


def config_from_args(
    model: type[BaseModel],
    args: argparse.Namespace,
    *,
    config_file: Path | None = None,
    ignore_other_keys: bool = False,
    defaults_for: Callable[[dict], dict] | None = None,
    **extra: Any,
) -> Any:
    """Build ``model`` from ``config_file`` (YAML) overlaid with the flags that were given.

    Errors name the flag (``--lora_r: ...``) or the file and key (``run.yaml: lora_r: ...``).
    ``ignore_other_keys`` reads only ``model``'s keys from the file (``slmops validate``
    takes the data settings out of a whole run config). ``defaults_for(given)`` supplies
    values under the file's and the flags' (``slmops evaluate`` takes a run's settings).
    """
    from slmops.config import describe_validation_error, read_yaml_mapping
    from slmops.errors import ConfigError

    file_values = read_yaml_mapping(config_file) if config_file else {}
    unknown = sorted(set(file_values) - set(model.model_fields))
    if ignore_other_keys:
        file_values = {key: value for key, value in file_values.items() if key not in unknown}
    elif unknown:
        raise ConfigError(
            f"{config_file}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; see --help for the names"
        )
    flag_values = {
        name: getattr(args, name)
        for name in model.model_fields
        if getattr(args, name, None) is not None
    }
    flag_values.update(extra)
    given = {**file_values, **flag_values}
    defaults = defaults_for(given) if defaults_for else {}
    try:
        return model.model_validate({**defaults, **given})
    except ValidationError as exc:
        in_file = None if config_file is None else set(file_values) - set(flag_values)
        message = describe_validation_error(
            exc,
            source=str(config_file) if config_file else None,
            flag_style=True,
            file_keys=in_file,
        )
        raise ConfigError(message) from None


def _choices(annotation: Any) -> list[str] | None:
    """The values of a ``Literal[...]`` (or ``Literal[...] | None``) setting, so ``--help``
    lists them."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = options[0] if len(options) == 1 else annotation
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return None


def _scalar_type(annotation: Any) -> type:
    """int / float / bool / str from ``int | None``, ``list[str] | None``..."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = options[0]
    if annotation in (int, float, bool):
        return annotation
    return str  # strings, and lists given comma-separated
