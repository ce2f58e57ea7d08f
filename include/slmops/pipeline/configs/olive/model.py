"""An Olive config's ``model`` (or ``input_model``): the base to fine-tune, and the
published model name (``workflow_id``, else the model's and method's)."""

from __future__ import annotations

import re

from slmops.pipeline.configs.olive._common import Reader, inner_path, settings


def read_model(reader: Reader, config: dict, method: str) -> None:
    """Read the input model into ``reader``: model_name_or_path and model_name."""
    if "model" in config and "input_model" in config:
        reader.fail("input_model", "give model or input_model, not both")
    key = "model" if "model" in config else "input_model"
    if key not in config:
        reader.fail("model", "missing; add model: {type: HfModel, model_path: HUB_ID_OR_FOLDER}")
    model = reader.mapping(config[key], key)
    kind = reader.text(model.get("type"), f"{key}.type")
    if kind.lower() not in ("hfmodel", "pytorchmodel"):
        reader.fail(f"{key}.type", f"{kind} cannot be fine-tuned; use HfModel with model_path")
    found = None
    for name, value, path in settings(model, key):
        if name == "model_path":
            found = (reader.text(value, path), path)
        elif name == "hf_config" and isinstance(value, dict) and "model_name" in value:
            where = f"{path}.model_name"
            found = (reader.text(value["model_name"], where), where)
        elif name == "task" and not str(value).startswith("text-generation"):
            reader.fail(path, f"{value} is not supported; slmops fine-tunes text-generation")
        elif name == "adapter_path":
            reader.fail(path, "slmops fine-tunes a base model; merge the adapter into it first")
        elif name != "task":
            reader.ignore(path, None)
    if found is None:
        reader.fail(f"{inner_path(model, key)}.model_path", "missing; give a hub id or a folder")
    reader.set("model_name_or_path", found[0], found[1])
    workflow = config.get("workflow_id")
    name = workflow or f"{found[0].rstrip('/').rsplit('/', 1)[-1]}-{method}"
    name = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:64]
    if name and workflow:
        reader.set("model_name", name, "workflow_id")
    elif name:
        reader.set("model_name", name, "(model and method)")
        reader.notes.append(f"model_name = {name!r}: the published name, from model and method")
