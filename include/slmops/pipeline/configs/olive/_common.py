"""What every Olive section reader shares: the ``Reader`` that collects params, where
each came from and notes, and the helpers that walk a block's settings."""

from __future__ import annotations

from typing import Any, NoReturn

from slmops.errors import ConfigError

# Why an Olive key with no slmops counterpart is ignored, by key.
REASONS = {
    "output_dir": "runs go under the artifacts root",
    "cache_dir": "runs go under the artifacts root",
    "host": "stages run on Airflow workers; device picks the queue",
    "target": "stages run on Airflow workers; device picks the queue",
    "systems": "stages run on Airflow workers; device picks the queue",
    "evaluator": "slmops evaluates with its own metrics and gates",
    "evaluators": "slmops evaluates with its own metrics and gates",
    "torch_dtype": "slmops picks the dtype for the device",
    "num_train_epochs": "slmops trains for max_steps",
    "seed": "the pipeline uses its own seed",
    "eval_dataset_size": "slmops holds out eval_fraction, a share of at most 0.5",
    "user_script": "slmops runs no user scripts; data comes from data_files or data_name",
}


class Reader:
    """Collects params, where each came from and notes, while walking one config."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.params: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.notes: list[str] = []
        self.pass_path = "passes"
        self.train_ref: tuple[Any, str] = (None, "")
        self.eval_ref: tuple[Any, str] = (None, "")

    def fail(self, path: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping of settings, got {type(value).__name__}")
        return value

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"expected a non-empty string, got {value!r}")
        return value

    def set(self, name: str, value: Any, path: str) -> None:
        if name in self.origins and not self.origins[name].startswith("("):
            self.fail(path, f"{name} is also given as {self.origins[name]}; keep one of them")
        self.params[name] = value
        self.origins[name] = path
        if not path.startswith("("):
            self.notes.append(f"{path} -> {name} = {value!r}")

    def ignore(self, path: str, reason: str | None) -> None:
        self.notes.append(f"{path} ignored: {reason or 'no slmops counterpart'}")


def settings(block: dict, path: str, nested: str = "config"):
    """(key, value, dotted path) of a block's settings: older Olive nests them under
    ``config`` (``params`` for data), newer Olive writes them flat; both are read. A
    model's or pass's ``type`` is read by the caller; a loader's is a setting."""
    for key, value in block.items():
        if key == nested and isinstance(value, dict):
            for inner, inner_value in value.items():
                yield inner, inner_value, f"{path}.{nested}.{inner}"
        elif key != "type" or nested == "params":
            yield key, value, f"{path}.{key}"


def inner_path(block: dict, path: str) -> str:
    """Where a missing setting belongs: under ``config`` when the block has one."""
    return f"{path}.config" if isinstance(block.get("config"), dict) else path
