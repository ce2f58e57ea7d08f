"""An Olive config's ``passes``: its one fine-tuning pass (LoRA, QLoRA or DoRA) as the
method, the LoRA settings and ``training_args``, and which data configs it names."""

from __future__ import annotations

from typing import Any

from slmops.config import split_commas
from slmops.pipeline.configs.olive._common import REASONS, Reader, inner_path, settings

METHODS = {"lora": "lora", "qlora": "qlora", "dora": "dora"}
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
_SUPPORTED = "slmops fine-tunes with LoRA, QLoRA or DoRA passes"


def read_passes(reader: Reader, config: dict) -> str:
    """Read the one fine-tuning pass into ``reader``; return its method. Its data config
    references are kept on ``reader`` (train_ref, eval_ref) for the data section."""
    passes = reader.mapping(config.get("passes"), "passes") if "passes" in config else {}
    tuning = []
    for name, spec in passes.items():
        path = f"passes.{name}"
        spec = reader.mapping(spec, path)
        kind = reader.text(spec.get("type"), f"{path}.type")
        if kind.lower() in METHODS:
            tuning.append((name, kind))
        elif kind.lower() in {other.lower() for other in _OTHER_ADAPTERS}:
            reader.fail(f"{path}.type", f"{kind} is not supported; {_SUPPORTED}")
    if not tuning:
        reader.fail("passes", f"no fine-tuning pass; add one under passes ({_SUPPORTED})")
    if len(tuning) > 1:
        listed = ", ".join(f"passes.{name} ({kind})" for name, kind in tuning)
        reader.fail("passes", f"one fine-tuning pass per run, found {listed}; keep one")
    name, kind = tuning[0]
    reader.pass_path = inner_path(passes[name], f"passes.{name}")
    method = METHODS[kind.lower()]
    reader.set("method", method, f"passes.{name}.type")
    for key, value, path in settings(passes[name], f"passes.{name}"):
        _pass_setting(reader, key, value, path)
    return reader.params["method"]


def _pass_setting(reader: Reader, key: str, value: Any, path: str) -> None:
    if key in _PASS_FIELDS:
        name = _PASS_FIELDS[key]
        if name in ("target_modules", "modules_to_save"):
            value = split_commas(value)
        reader.set(name, value, path)
    elif key == "training_args":
        for arg, arg_value in reader.mapping(value, path).items():
            if arg in _TRAINING_ARGS:
                reader.set(arg, arg_value, f"{path}.{arg}")
            else:
                reader.ignore(f"{path}.{arg}", REASONS.get(arg, "slmops sets it itself"))
    elif key == "use_dora" and value is True and reader.params["method"] == "lora":
        reader.params["method"] = "dora"
        reader.notes.append(f"{path} -> method = 'dora'")
    elif key == "train_data_config":
        reader.train_ref = (value, path)
    elif key == "eval_data_config":
        reader.eval_ref = (value, path)
    elif key == "eval_dataset_size" and isinstance(value, float) and 0 < value < 1:
        reader.set("eval_fraction", value, path)
    else:
        reader.ignore(path, REASONS.get(key))
