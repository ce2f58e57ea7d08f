"""A whole Olive workflow config: told apart from flat params (``is_olive_config``),
walked section by section into PipelineParams fields (``from_olive``) and validated, so
a bad value names its Olive key; ``OliveMapping`` is the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slmops.errors import ConfigError
from slmops.pipeline.configs.module_names import map_module_names, module_names
from slmops.pipeline.configs.olive._common import REASONS, Reader
from slmops.pipeline.configs.olive.data import read_data_configs
from slmops.pipeline.configs.olive.model import read_model
from slmops.pipeline.configs.olive.passes import read_passes
from slmops.pipeline.configs.olive.targets import read_targets
from slmops.pipeline.params import PipelineParams

_DEFAULTS_SAID = ("max_steps", "learning_rate", "per_device_train_batch_size")


@dataclass
class OliveMapping:
    """An Olive config as params (PipelineParams field names only) plus what was done."""

    params: dict[str, Any]
    notes: list[str]
    source: str
    origins: dict[str, str] = field(default_factory=dict)  # param -> Olive dotted key

    def fit_modules(self, model_dir: Path) -> None:
        """Translate target_modules / modules_to_save to the names of the model in
        ``model_dir`` (GPT-2 names in the guide, a Llama underneath), noting each change."""
        linear, modules = module_names(model_dir)
        for name in ("target_modules", "modules_to_save"):
            if not self.params.get(name):
                continue
            where = self.origins.get(name, name)
            try:
                names, notes = map_module_names(
                    self.params[name], linear=linear, modules=modules, field=where
                )
            except ConfigError as exc:
                raise ConfigError(f"{self.source}: {exc}") from None
            self.params[name] = names
            self.notes += notes


def is_olive_config(mapping: dict) -> bool:
    """True for an Olive workflow (passes, data_configs or a typed model) rather than
    slm_finetune params, whose keys are flat."""
    if not isinstance(mapping, dict):
        return False
    if "passes" in mapping or "data_configs" in mapping:
        return True
    return any(
        isinstance(mapping.get(key), dict) and "type" in mapping[key]
        for key in ("model", "input_model")
    )


def from_olive(mapping: dict, *, source: str) -> OliveMapping:
    """``mapping`` (an Olive config) as PipelineParams fields; errors name ``source`` and
    the Olive key. The params are validated here, so a bad value names its Olive key."""
    reader = Reader(source)
    method = read_passes(reader, mapping)
    read_model(reader, mapping, method)
    read_data_configs(reader, mapping)
    read_targets(reader, mapping)
    for key, value in mapping.items():
        if key in ("model", "input_model", "passes", "data_configs", "workflow_id"):
            continue
        if key == "engine" and isinstance(value, dict):
            for sub in value:
                reader.ignore(f"engine.{sub}", REASONS.get(sub))
        else:
            reader.ignore(key, REASONS.get(key))
    reader.set("label_field", None, "(generation task)")
    reader.set("suite", "default", "(generation task)")
    reader.notes.append("label_field = None, suite = 'default': a generation task, no labels")
    _validate(reader)
    return OliveMapping(reader.params, reader.notes, source, reader.origins)


def _validate(reader: Reader) -> None:
    for name in _DEFAULTS_SAID:
        if name not in reader.params:
            default = PipelineParams.model_fields[name].default
            reader.notes.append(f"{name} not in the config: slmops default {default}")
    try:
        PipelineParams.model_validate(reader.params)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = error["loc"][0] if error["loc"] else None
            message = error["msg"].removeprefix("Value error, ")
            where = reader.origins.get(name, name) if name else None
            problems.append(f"{where}: {message}" if where else message)
        raise ConfigError(f"{reader.source}: " + "; ".join(problems)) from None
