"""Microsoft Olive workflow configs (``olive run --config``) read as slm_finetune params.

``slmops run --config FILE`` takes an Olive config unchanged: ``from_olive`` maps its one
fine-tuning pass, that pass's data config and the input model onto ``PipelineParams``
fields, and says line by line what came from where and what was ignored. The reference
guide names GPT-2 modules (c_attn, c_proj, ln_f); ``map_module_names`` translates them to
the model at hand, whose names ``module_names`` reads from safetensors headers alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from slmops.config import split_commas
from slmops.errors import ConfigError
from slmops.export.targets import TARGETS
from slmops.pipeline.configs.module_names import map_module_names, module_names
from slmops.pipeline.params import PipelineParams

_METHODS = {"lora": "lora", "qlora": "qlora", "dora": "dora"}
_OTHER_ADAPTERS = ("LoftQ", "LoHa", "LoKr", "SDLoRA")  # Olive fine-tuning we do not run
_PASS_FIELDS = {
    "r": "lora_r",
    "lora_r": "lora_r",
    "alpha": "lora_alpha",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "target_modules",
    "modules_to_save": "modules_to_save",
    "weight_decay": "weight_decay",  # the guide puts it here; Olive in training_args
}
_TRAINING_ARGS = (
    "learning_rate",
    "per_device_train_batch_size",
    "max_steps",
    "gradient_accumulation_steps",
    "eval_steps",
    "weight_decay",
)
_REASONS = {
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
_FILE_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}  # datasets' loaders, not data
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
    reader = _Reader(source)
    method = reader.passes(mapping)
    reader.model(mapping, method)
    reader.data(mapping)
    reader.targets(mapping)
    for key, value in mapping.items():
        if key in ("model", "input_model", "passes", "data_configs", "workflow_id"):
            continue
        if key == "engine" and isinstance(value, dict):
            for sub in value:
                reader.ignore(f"engine.{sub}", _REASONS.get(sub))
        else:
            reader.ignore(key, _REASONS.get(key))
    reader.set("label_field", None, "(generation task)")
    reader.set("suite", "default", "(generation task)")
    reader.notes.append("label_field = None, suite = 'default': a generation task, no labels")
    reader.validate()
    return OliveMapping(reader.params, reader.notes, source, reader.origins)


class _Reader:
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

    # passes -----------------------------------------------------------------------------
    def passes(self, config: dict) -> str:
        passes = self.mapping(config.get("passes"), "passes") if "passes" in config else {}
        tuning = []
        for name, spec in passes.items():
            path = f"passes.{name}"
            spec = self.mapping(spec, path)
            kind = self.text(spec.get("type"), f"{path}.type")
            if kind.lower() in _METHODS:
                tuning.append((name, kind))
            elif kind.lower() in {other.lower() for other in _OTHER_ADAPTERS}:
                self.fail(f"{path}.type", f"{kind} is not supported; {_SUPPORTED}")
        if not tuning:
            self.fail("passes", f"no fine-tuning pass; add one under passes ({_SUPPORTED})")
        if len(tuning) > 1:
            listed = ", ".join(f"passes.{name} ({kind})" for name, kind in tuning)
            self.fail("passes", f"one fine-tuning pass per run, found {listed}; keep one")
        name, kind = tuning[0]
        self.pass_path = _inner_path(passes[name], f"passes.{name}")
        method = _METHODS[kind.lower()]
        self.set("method", method, f"passes.{name}.type")
        for key, value, path in _settings(passes[name], f"passes.{name}"):
            self.pass_setting(key, value, path)
        return self.params["method"]

    def pass_setting(self, key: str, value: Any, path: str) -> None:
        if key in _PASS_FIELDS:
            name = _PASS_FIELDS[key]
            if name in ("target_modules", "modules_to_save"):
                value = split_commas(value)
            self.set(name, value, path)
        elif key == "training_args":
            for arg, arg_value in self.mapping(value, path).items():
                if arg in _TRAINING_ARGS:
                    self.set(arg, arg_value, f"{path}.{arg}")
                else:
                    self.ignore(f"{path}.{arg}", _REASONS.get(arg, "slmops sets it itself"))
        elif key == "use_dora" and value is True and self.params["method"] == "lora":
            self.params["method"] = "dora"
            self.notes.append(f"{path} -> method = 'dora'")
        elif key == "train_data_config":
            self.train_ref = (value, path)
        elif key == "eval_data_config":
            self.eval_ref = (value, path)
        elif key == "eval_dataset_size" and isinstance(value, float) and 0 < value < 1:
            self.set("eval_fraction", value, path)
        else:
            self.ignore(path, _REASONS.get(key))

    # model ------------------------------------------------------------------------------
    def model(self, config: dict, method: str) -> None:
        if "model" in config and "input_model" in config:
            self.fail("input_model", "give model or input_model, not both")
        key = "model" if "model" in config else "input_model"
        if key not in config:
            self.fail("model", "missing; add model: {type: HfModel, model_path: HUB_ID_OR_FOLDER}")
        model = self.mapping(config[key], key)
        kind = self.text(model.get("type"), f"{key}.type")
        if kind.lower() not in ("hfmodel", "pytorchmodel"):
            self.fail(f"{key}.type", f"{kind} cannot be fine-tuned; use HfModel with model_path")
        found = None
        for name, value, path in _settings(model, key):
            if name == "model_path":
                found = (self.text(value, path), path)
            elif name == "hf_config" and isinstance(value, dict) and "model_name" in value:
                where = f"{path}.model_name"
                found = (self.text(value["model_name"], where), where)
            elif name == "task" and not str(value).startswith("text-generation"):
                self.fail(path, f"{value} is not supported; slmops fine-tunes text-generation")
            elif name == "adapter_path":
                self.fail(path, "slmops fine-tunes a base model; merge the adapter into it first")
            elif name != "task":
                self.ignore(path, None)
        if found is None:
            self.fail(f"{_inner_path(model, key)}.model_path", "missing; give a hub id or a folder")
        self.set("model_name_or_path", found[0], found[1])
        workflow = config.get("workflow_id")
        name = workflow or f"{found[0].rstrip('/').rsplit('/', 1)[-1]}-{method}"
        name = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:64]
        if name and workflow:
            self.set("model_name", name, "workflow_id")
        elif name:
            self.set("model_name", name, "(model and method)")
            self.notes.append(f"model_name = {name!r}: the published name, from model and method")

    # data -------------------------------------------------------------------------------
    def data(self, config: dict) -> None:
        configs = config.get("data_configs") or []
        if not isinstance(configs, list):
            self.fail("data_configs", "expected a list of data configs")
        train, train_path = self.pick(configs, *self.train_ref, required=True)
        source = self.read_data(train, train_path)
        eval_config, eval_path = self.pick(configs, *self.eval_ref, required=False)
        if eval_config is not None:
            self.read_eval(eval_config, eval_path, source)
        for index, block in enumerate(configs):
            if block is not train and block is not eval_config:
                name = block.get("name") if isinstance(block, dict) else None
                self.ignore(f"data_configs[{index}] ({name})", "not the fine-tuning data")

    def pick(self, configs: list, ref: Any, ref_path: str, *, required: bool):
        """The data config a pass names (by name or inline), or the only one there is."""
        names = [block.get("name") if isinstance(block, dict) else None for block in configs]
        if isinstance(ref, dict):
            return ref, ref_path
        if isinstance(ref, str):
            if ref not in names:
                self.fail(ref_path, f"no data config named {ref!r}; data_configs has {names}")
            index = names.index(ref)
            return configs[index], f"data_configs[{index}]"
        if ref is not None:
            self.fail(ref_path, "expected the name of a data config")
        if not required:
            return None, ""
        if len(configs) == 1:
            return configs[0], "data_configs[0]"
        if not configs:
            self.fail("data_configs", "missing; add one with load_dataset_config.data_files")
        self.fail(
            f"{self.pass_path}.train_data_config",
            f"missing, and data_configs has {len(configs)} ({names}); name the training one",
        )

    def read_data(self, block: Any, path: str) -> dict:
        block = self.mapping(block, path)
        kind = block.get("type")
        if kind is not None and str(kind).lower() != "huggingfacecontainer":
            self.fail(f"{path}.type", f"{kind} cannot feed fine-tuning; use HuggingfaceContainer")
        for key in block:
            if key not in ("name", "type", "load_dataset_config", "pre_process_data_config"):
                self.ignore(f"{path}.{key}", _REASONS.get(key))
        source = self.load(block.get("load_dataset_config"), f"{path}.load_dataset_config")
        for name, (value, where) in source.items():
            self.set(name, value, where)
        if "data_files" not in source:  # the params' default names the demo's file
            self.set("data_files", None, "(data_name given)")
        self.pre_process(block.get("pre_process_data_config"), f"{path}.pre_process_data_config")
        return {name: value for name, (value, _) in source.items()}

    def load(self, block: Any, path: str) -> dict[str, tuple[Any, str]]:
        """param -> (value, Olive key) from a load_dataset_config (older Olive nests its
        settings under ``params``)."""
        found: dict[str, tuple[Any, str]] = {}
        if block is None:
            self.fail(path, f"missing; {_GIVE_DATA}")
        for key, value, where in _settings(self.mapping(block, path), path, nested="params"):
            if key == "data_files":
                files = [value] if isinstance(value, str) else value
                if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                    self.fail(where, "expected a file name or a list of file names")
                found["data_files"] = (files, where)
            elif key in ("data_name", "path"):
                found["data_name"] = (self.text(value, where), where)
            elif key == "split":
                found["train_split"] = (self.text(value, where), where)
            elif key in ("subset", "name"):
                self.fail(where, _NO_SUBSET)
            elif key == "type" and value not in (None, "huggingface_dataset"):
                self.fail(where, f"custom loader {value!r} cannot run here; {_GIVE_DATA}")
            elif key != "type":
                self.ignore(where, None)
        name = found.get("data_name", ("", ""))
        if name[0].lower() in _FILE_BUILDERS and "data_files" in found:
            self.ignore(found.pop("data_name")[1], "a file format; data_files names the files")
        if "data_files" in found and "data_name" in found:
            self.fail(path, "data_files and data_name both given; keep one")
        if "data_files" not in found and "data_name" not in found:
            self.fail(path, f"no data; {_GIVE_DATA}")
        return found

    def pre_process(self, block: Any, path: str) -> None:
        block = self.mapping(block, path) if block is not None else {}
        for key, value, where in _settings(block, path, nested="params"):
            if key == "text_template":
                self.set("template_kind", "template", where)
                self.set("text_template", self.text(value, where), where)
            elif key in ("text_cols", "text_field"):
                columns = [value] if isinstance(value, str) else value
                if not isinstance(columns, list) or len(columns) != 1:
                    self.fail(where, "give one text column, or a text_template joining several")
                self.set("template_kind", "text", where)
                self.set("text_field", self.text(columns[0], where), where)
            elif key == "max_seq_len":
                self.set("max_seq_len", value, where)
            else:
                self.ignore(where, None)
        if "template_kind" not in self.params:
            self.fail(
                f"{path}.text_template",
                "missing; add pre_process_data_config.text_template, e.g. "
                "'User: {input}\\nAssistant: {output}' (or text_cols naming one text column)",
            )

    def read_eval(self, block: Any, path: str, train: dict) -> None:
        """An eval data config over the training data's own source becomes eval_split;
        other eval data cannot be expressed, and the held-out fraction is used instead."""
        block = self.mapping(block, path)
        load = block.get("load_dataset_config")
        if isinstance(load, dict):
            flat = {**load, **(load.get("params") or {})}
            files = flat.get("data_files")
            same = ([files] if isinstance(files, str) else files) == train.get("data_files")
            name = flat.get("data_name", flat.get("path"))
            if same and name == train.get("data_name") and isinstance(flat.get("split"), str):
                self.set("eval_split", flat["split"], f"{path}.load_dataset_config.split")
                return
        self.ignore(path, "slmops evaluates on a split of the training data; set eval_split")

    # export -----------------------------------------------------------------------------
    def targets(self, config: dict) -> None:
        # A CUDA provider anywhere under systems means the builder ran for a GPU.
        gpu = "cuda" in json.dumps(config.get("systems") or {}).lower()
        targets = []
        for name, spec in (config.get("passes") or {}).items():
            path, kind = f"passes.{name}", str(spec.get("type"))
            if kind.lower() in _METHODS:
                continue
            precision = dict((k, v) for k, v, _ in _settings(spec, path)).get("precision")
            target = _builder_target(precision, gpu) if kind == "ModelBuilder" else None
            if target:
                targets.append(target)
                self.notes.append(f"{path} ({kind}, {precision}) -> targets += {target!r}")
            else:
                self.ignore(f"{path} ({kind})", "slmops exports each of targets itself")
        if targets:
            self.set("targets", list(dict.fromkeys(targets)), "passes (ModelBuilder)")

    def validate(self) -> None:
        for name in _DEFAULTS_SAID:
            if name not in self.params:
                default = PipelineParams.model_fields[name].default
                self.notes.append(f"{name} not in the config: slmops default {default}")
        try:
            PipelineParams.model_validate(self.params)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = error["loc"][0] if error["loc"] else None
                message = error["msg"].removeprefix("Value error, ")
                where = self.origins.get(name, name) if name else None
                problems.append(f"{where}: {message}" if where else message)
            raise ConfigError(f"{self.source}: " + "; ".join(problems)) from None


_SUPPORTED = "slmops fine-tunes with LoRA, QLoRA or DoRA passes"
_GIVE_DATA = "give load_dataset_config.data_files (local files) or data_name (a hub dataset)"
_NO_SUBSET = (
    "a dataset configuration cannot be chosen in a pipeline run; point data_files at its files"
)


def _settings(block: dict, path: str, nested: str = "config"):
    """(key, value, dotted path) of a block's settings: older Olive nests them under
    ``config`` (``params`` for data), newer Olive writes them flat; both are read. A
    model's or pass's ``type`` is read by the caller; a loader's is a setting."""
    for key, value in block.items():
        if key == nested and isinstance(value, dict):
            for inner, inner_value in value.items():
                yield inner, inner_value, f"{path}.{nested}.{inner}"
        elif key != "type" or nested == "params":
            yield key, value, f"{path}.{key}"


def _inner_path(block: dict, path: str) -> str:
    """Where a missing setting belongs: under ``config`` when the block has one."""
    return f"{path}.config" if isinstance(block.get("config"), dict) else path


def _builder_target(precision: Any, gpu: bool) -> str | None:
    device = "gpu" if gpu or precision == "fp16" else "cpu"
    target = f"{device}-{precision}"
    return target if target in TARGETS else None
