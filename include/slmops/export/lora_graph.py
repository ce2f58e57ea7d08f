"""The LoRA weights inside an exported ONNX graph: found by their MatMul nodes, read out,
turned into graph inputs with a symbolic rank (``lora_weights_to_inputs``), checked
against each adapter (``check_matches``) and written as ``.onnx_adapter`` files."""

from __future__ import annotations

import re
from pathlib import Path

from slmops.errors import AdapterMismatch
from slmops.export.quantize import load_model, save_model
from slmops.training.adapters import adapter_base_name

RANK_DIM = "lora_r"
_LORA_NODE = re.compile(r"/lora_[AB]/")


def lora_weight_names(model) -> dict[str, str]:
    """LoRA weight initializer -> the MatMul node that uses it."""
    return {
        node.input[1]: node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and _LORA_NODE.search(node.name)
    }


def lora_weights(model, source: Path) -> dict:
    """The LoRA weights of an export: initializer name -> float array."""
    from onnx import numpy_helper

    names = lora_weight_names(model)
    if not names:
        raise AdapterMismatch(
            f"the export in {source} has no LoRA MatMuls; the builder did not apply the "
            "adapter (is it a LoRA adapter of a supported architecture?)"
        )
    weights = {
        initializer.name: numpy_helper.to_array(initializer)
        for initializer in model.graph.initializer
        if initializer.name in names
    }
    if len(weights) != len(names):
        raise AdapterMismatch(
            f"the export in {source} quantized {len(names) - len(weights)} LoRA weights; "
            "they must stay float to be swapped at run time"
        )
    return weights


def lora_weights_to_inputs(model_path: Path) -> None:
    """Rewrite the model so its LoRA weights are graph inputs with a symbolic rank, each
    with a rank-1 zero default (an initializer named like an input is its default), so
    with no adapter selected the LoRA branch adds nothing."""
    import numpy as np
    from onnx import helper, numpy_helper

    model = load_model(model_path)
    weights = lora_weights(model, model_path.parent)
    kept = [i for i in model.graph.initializer if i.name not in weights]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for name, array in weights.items():
        is_a = ".lora_A." in name
        shape = [array.shape[0], RANK_DIM] if is_a else [RANK_DIM, array.shape[1]]
        elem_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        model.graph.input.append(helper.make_tensor_value_info(name, elem_type, shape))
        zero = np.zeros((array.shape[0], 1) if is_a else (1, array.shape[1]), array.dtype)
        model.graph.initializer.append(numpy_helper.from_array(zero, name))
    save_model(model, model_path)


def lora_inputs(model_path: Path) -> dict[str, list]:
    """The base's LoRA inputs: name -> shape (the rank as the symbol ``lora_r``)."""
    model = load_model(model_path)
    names = set(lora_weight_names(model))
    return {
        value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in model.graph.input
        if value.name in names
    }


def check_matches(name: str, path: Path, weights: dict, inputs: dict[str, list]) -> None:
    """An adapter fits the base when it has exactly the base's LoRA inputs, each with the
    base's fixed side and one rank shared by its A and B."""
    missing = sorted(set(inputs) - set(weights))
    extra = sorted(set(weights) - set(inputs))
    if missing or extra:
        raise AdapterMismatch(
            f"adapter {name} ({path}) adapts other layers than the base's first adapter: "
            f"missing {_short(missing)}; extra {_short(extra)}. Train every adapter with the "
            "same --target_modules (or build one multi-adapter model per set of modules)"
        )
    for tensor, array in weights.items():
        expected = inputs[tensor]
        fixed = [(i, dim) for i, dim in enumerate(expected) if dim != RANK_DIM]
        if array.ndim != len(expected) or any(array.shape[i] != dim for i, dim in fixed):
            raise AdapterMismatch(
                f"adapter {name} ({path}): {tensor} has shape {list(array.shape)}, the base "
                f"expects {expected}; it was trained on {adapter_base_name(path)}"
            )


def _short(names: list[str]) -> str:
    if not names:
        return "none"
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def write_adapter(tensors: dict, path: Path) -> None:
    import onnxruntime as ort

    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters(
        {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in tensors.items()}
    )
    adapter.export_adapter(str(path))
