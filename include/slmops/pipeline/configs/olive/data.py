"""An Olive config's ``data_configs``: the training data config (the one the pass names,
or the only one) as data_files or data_name, split and text template; an eval data
config over the same source as eval_split. Other data configs are noted as ignored."""

from __future__ import annotations

from typing import Any

from slmops.pipeline.configs.olive._common import REASONS, Reader, settings

_FILE_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}  # datasets' loaders, not data
_GIVE_DATA = "give load_dataset_config.data_files (local files) or data_name (a hub dataset)"
_NO_SUBSET = (
    "a dataset configuration cannot be chosen in a pipeline run; point data_files at its files"
)


def read_data_configs(reader: Reader, config: dict) -> None:
    """Read the data configs into ``reader``, after the passes (which name them)."""
    configs = config.get("data_configs") or []
    if not isinstance(configs, list):
        reader.fail("data_configs", "expected a list of data configs")
    train, train_path = _pick(reader, configs, *reader.train_ref, required=True)
    source = _read_train(reader, train, train_path)
    eval_config, eval_path = _pick(reader, configs, *reader.eval_ref, required=False)
    if eval_config is not None:
        _read_eval(reader, eval_config, eval_path, source)
    for index, block in enumerate(configs):
        if block is not train and block is not eval_config:
            name = block.get("name") if isinstance(block, dict) else None
            reader.ignore(f"data_configs[{index}] ({name})", "not the fine-tuning data")


def _pick(reader: Reader, configs: list, ref: Any, ref_path: str, *, required: bool):
    """The data config a pass names (by name or inline), or the only one there is."""
    names = [block.get("name") if isinstance(block, dict) else None for block in configs]
    if isinstance(ref, dict):
        return ref, ref_path
    if isinstance(ref, str):
        if ref not in names:
            reader.fail(ref_path, f"no data config named {ref!r}; data_configs has {names}")
        index = names.index(ref)
        return configs[index], f"data_configs[{index}]"
    if ref is not None:
        reader.fail(ref_path, "expected the name of a data config")
    if not required:
        return None, ""
    if len(configs) == 1:
        return configs[0], "data_configs[0]"
    if not configs:
        reader.fail("data_configs", "missing; add one with load_dataset_config.data_files")
    reader.fail(
        f"{reader.pass_path}.train_data_config",
        f"missing, and data_configs has {len(configs)} ({names}); name the training one",
    )


def _read_train(reader: Reader, block: Any, path: str) -> dict:
    block = reader.mapping(block, path)
    kind = block.get("type")
    if kind is not None and str(kind).lower() != "huggingfacecontainer":
        reader.fail(f"{path}.type", f"{kind} cannot feed fine-tuning; use HuggingfaceContainer")
    for key in block:
        if key not in ("name", "type", "load_dataset_config", "pre_process_data_config"):
            reader.ignore(f"{path}.{key}", REASONS.get(key))
    source = _load(reader, block.get("load_dataset_config"), f"{path}.load_dataset_config")
    for name, (value, where) in source.items():
        reader.set(name, value, where)
    if "data_files" not in source:  # the params' default names the demo's file
        reader.set("data_files", None, "(data_name given)")
    _pre_process(reader, block.get("pre_process_data_config"), f"{path}.pre_process_data_config")
    return {name: value for name, (value, _) in source.items()}


def _load(reader: Reader, block: Any, path: str) -> dict[str, tuple[Any, str]]:
    """param -> (value, Olive key) from a load_dataset_config (older Olive nests its
    settings under ``params``)."""
    found: dict[str, tuple[Any, str]] = {}
    if block is None:
        reader.fail(path, f"missing; {_GIVE_DATA}")
    for key, value, where in settings(reader.mapping(block, path), path, nested="params"):
        if key == "data_files":
            files = [value] if isinstance(value, str) else value
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                reader.fail(where, "expected a file name or a list of file names")
            found["data_files"] = (files, where)
        elif key in ("data_name", "path"):
            found["data_name"] = (reader.text(value, where), where)
        elif key == "split":
            found["train_split"] = (reader.text(value, where), where)
        elif key in ("subset", "name"):
            reader.fail(where, _NO_SUBSET)
        elif key == "type" and value not in (None, "huggingface_dataset"):
            reader.fail(where, f"custom loader {value!r} cannot run here; {_GIVE_DATA}")
        elif key != "type":
            reader.ignore(where, None)
    name = found.get("data_name", ("", ""))
    if name[0].lower() in _FILE_BUILDERS and "data_files" in found:
        reader.ignore(found.pop("data_name")[1], "a file format; data_files names the files")
    if "data_files" in found and "data_name" in found:
        reader.fail(path, "data_files and data_name both given; keep one")
    if "data_files" not in found and "data_name" not in found:
        reader.fail(path, f"no data; {_GIVE_DATA}")
    return found


def _pre_process(reader: Reader, block: Any, path: str) -> None:
    block = reader.mapping(block, path) if block is not None else {}
    for key, value, where in settings(block, path, nested="params"):
        if key == "text_template":
            reader.set("template_kind", "template", where)
            reader.set("text_template", reader.text(value, where), where)
        elif key in ("text_cols", "text_field"):
            columns = [value] if isinstance(value, str) else value
            if not isinstance(columns, list) or len(columns) != 1:
                reader.fail(where, "give one text column, or a text_template joining several")
            reader.set("template_kind", "text", where)
            reader.set("text_field", reader.text(columns[0], where), where)
        elif key == "max_seq_len":
            reader.set("max_seq_len", value, where)
        else:
            reader.ignore(where, None)
    if "template_kind" not in reader.params:
        reader.fail(
            f"{path}.text_template",
            "missing; add pre_process_data_config.text_template, e.g. "
            "'User: {input}\\nAssistant: {output}' (or text_cols naming one text column)",
        )


def _read_eval(reader: Reader, block: Any, path: str, train: dict) -> None:
    """An eval data config over the training data's own source becomes eval_split;
    other eval data cannot be expressed, and the held-out fraction is used instead."""
    block = reader.mapping(block, path)
    load = block.get("load_dataset_config")
    if isinstance(load, dict):
        flat = {**load, **(load.get("params") or {})}
        files = flat.get("data_files")
        same = ([files] if isinstance(files, str) else files) == train.get("data_files")
        name = flat.get("data_name", flat.get("path"))
        if same and name == train.get("data_name") and isinstance(flat.get("split"), str):
            reader.set("eval_split", flat["split"], f"{path}.load_dataset_config.split")
            return
    reader.ignore(path, "slmops evaluates on a split of the training data; set eval_split")
