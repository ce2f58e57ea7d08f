"""Fewer, larger nodes in a multi-adapter graph: projections that read the same input are
packed into one MatMulNBits with one LoRA branch (q/k/v, and gate/up).

The builder writes, with LoRA as inputs, q/k/v and gate/up as separate int4 MatMuls, each
with its own LoRA A MatMul, B MatMul and Add (the merged int4 model packs q/k/v into one).
At decode time (one token) these small nodes cost about as much as the weights: per layer
28 nodes instead of the merged model's 5. Packed, a group of projections is one
MatMulNBits (weights concatenated along N), one MatMul by the concatenated A matrices, one
by the block-diagonal B matrices and one Add; gate/up are split back after the Add.

A group packs when at least one of its projections carries LoRA: adapters on q and v only
(PEFT's and Olive's default for Llama) give one q/k/v MatMulNBits and one LoRA branch
whose B has zero columns where k is, the merged model's layout plus three nodes. The rank
of the packed LoRA inputs is symbolic as before (the sum of the adapted projections'
ranks). The packing is recorded in the model's metadata (``packed_layout``), and
``fuse_adapter`` turns an adapter's weights into that layout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

GROUPS = {"attn": ("q_proj", "k_proj", "v_proj"), "mlp": ("gate_proj", "up_proj")}
PACKED = {"attn": "qkv_proj", "mlp": "gate_up_proj"}
RANK_DIM = "lora_r"
LAYOUT_KEY = "slmops.lora_packing"  # model metadata: the groups packed, as JSON


def _lora_name(layer: str, kind: str, proj: str, side: str) -> str:
    return f"model.layers.{layer}.{kind}.{proj}.lora_{side}.MatMul.weight"


def fuse_lora_model(model_path: Path) -> int:
    """``fuse_lora_graph`` on a saved model (rewritten in place when a group was packed)."""
    from slmops.export.quantize import load_model, save_model

    model = load_model(model_path)
    packed = fuse_lora_graph(model)
    if packed:
        save_model(model, model_path)
    return packed


def packed_layout(model_path: Path) -> dict[str, dict]:
    """What ``fuse_lora_graph`` packed in a saved model: ``model.layers.L.KIND.PACKED`` ->
    ``{"projections": [[proj, width], ...], "adapted": [proj, ...]}`` ({} when nothing)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    entry = next((p.value for p in model.metadata_props if p.key == LAYOUT_KEY), None)
    return json.loads(entry) if entry else {}


def fuse_adapter(weights: dict, layout: dict[str, dict]) -> dict:
    """An adapter's LoRA weights (name -> array, the builder's unpacked names) in the
    packed ``layout`` of a base (``packed_layout``): for each group, the adapted
    projections' A matrices side by side and their B matrices block-diagonal, with zero
    columns where a projection of the group has no adapter. A group the adapter does not
    match (other projections, other widths) stays as it is, and ``check_matches`` then
    names the difference."""
    import numpy as np

    fused = dict(weights)
    for group, entry in layout.items():
        layer, kind = re.fullmatch(r"model\.layers\.(\d+)\.(\w+)\.\w+", group).groups()
        widths = dict(entry["projections"])
        adapted = entry["adapted"]
        names = [_lora_name(layer, kind, p, side) for p in adapted for side in "AB"]
        if not all(name in fused for name in names) or any(
            fused[_lora_name(layer, kind, p, "B")].shape[1] != widths[p] for p in adapted
        ):
            continue
        a = [fused.pop(_lora_name(layer, kind, p, "A")) for p in adapted]
        b = {p: fused.pop(_lora_name(layer, kind, p, "B")) for p in adapted}
        block = np.zeros((sum(x.shape[0] for x in b.values()), sum(widths.values())), a[0].dtype)
        row = col = 0
        for proj, width in entry["projections"]:
            if proj in b:
                block[row : row + b[proj].shape[0], col : col + width] = b[proj]
                row += b[proj].shape[0]
            col += width
        packed = PACKED[kind]
        fused[_lora_name(layer, kind, packed, "A")] = np.concatenate(a, axis=1)
        fused[_lora_name(layer, kind, packed, "B")] = block
    return fused


def _groups_adapted(names) -> list[tuple[str, str, tuple[str, ...]]]:
    """(layer, kind, the group's projections) for each group with LoRA on any of them."""
    layers = sorted(
        {m.group(1) for n in names if (m := re.match(r"model\.layers\.(\d+)\.", n))}, key=int
    )
    found = []
    for layer in layers:
        for kind, projs in GROUPS.items():
            if any(all(_lora_name(layer, kind, p, s) in names for s in "AB") for p in projs):
                found.append((layer, kind, projs))
    return found


def fuse_lora_graph(model) -> int:
    """Pack each group of projections of ``model`` (an onnx ModelProto whose LoRA weights
    are inputs, see ``lora_graph.lora_weights_to_inputs``) in place and record the layout
    in its metadata; returns how many groups were packed. A group whose nodes are not laid
    out as expected is left alone."""
    layout = {}
    names = {value.name for value in model.graph.input}
    for layer, kind, projs in _groups_adapted(names):
        index = _Index(model.graph)
        with_lora = [all(_lora_name(layer, kind, p, s) in names for s in "AB") for p in projs]
        parts = [
            _projection(layer, kind, p, index.producer, index.consumers) if lora else None
            for p, lora in zip(projs, with_lora, strict=True)
        ]
        adapted = [part for part, lora in zip(parts, with_lora, strict=True) if lora]
        # a projection with LoRA laid out otherwise leaves its group alone
        if any(part is None for part in adapted) or len({part["x"] for part in adapted}) != 1:
            continue
        parts = [
            part or _plain_projection(layer, kind, proj, adapted[0]["x"], index.consumers)
            for proj, part in zip(projs, parts, strict=True)
        ]
        if any(part is None for part in parts):
            continue
        attrs = [_attributes(part["nbits"]) for part in parts]
        if any(_without_n(a) != _without_n(attrs[0]) for a in attrs):
            continue
        _pack(model.graph, index, layer, kind, parts, attrs)
        layout[f"model.layers.{layer}.{kind}.{PACKED[kind]}"] = {
            "projections": [[part["proj"], a["N"]] for part, a in zip(parts, attrs, strict=True)],
            "adapted": [part["proj"] for part in adapted],
        }
    if layout:
        kept = [p for p in model.metadata_props if p.key != LAYOUT_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        entry = model.metadata_props.add()
        entry.key, entry.value = LAYOUT_KEY, json.dumps(layout)
    return len(layout)


class _Index:
    """Who produces and who reads each value, and the initializers and inputs by name."""

    def __init__(self, graph):
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.inits = {init.name: init for init in graph.initializer}
        self.inputs = {value.name: value for value in graph.input}


def _pack(graph, index: _Index, layer: str, kind: str, parts: list[dict], attrs: list) -> None:
    """Replace one group's nodes by one MatMulNBits, one LoRA branch and (gate/up) a Split."""
    import numpy as np
    from onnx import helper, numpy_helper

    x = parts[0]["x"]
    widths = [a["N"] for a in attrs]
    prefix = f"/model/layers.{layer}/{kind}/{PACKED[kind]}"
    weight_prefix = f"model.layers.{layer}.{kind}.{PACKED[kind]}.MatMul"
    nbits_inputs = [x]
    for slot in range(1, len(parts[0]["nbits"].input)):
        names = [part["nbits"].input[slot] for part in parts]
        if not names[0]:
            nbits_inputs.append("")
            continue
        joined = np.concatenate([numpy_helper.to_array(index.inits[name]) for name in names])
        name = f"{weight_prefix}.{names[0].rsplit('.', 1)[-1]}"
        graph.initializer.append(numpy_helper.from_array(joined, name))
        nbits_inputs.append(name)
    nbits_out = f"{prefix}/MatMul/output_0"
    nodes = [
        helper.make_node("MatMulNBits", nbits_inputs, [nbits_out], name=f"{prefix}/MatMul_Q4",
                         domain="com.microsoft", **{**attrs[0], "N": sum(widths)})
    ]  # fmt: skip
    a_name = _lora_name(layer, kind, PACKED[kind], "A")
    b_name = _lora_name(layer, kind, PACKED[kind], "B")
    first = next(part for part in parts if part["adapted"])
    tensor = index.inputs[_lora_name(layer, kind, first["proj"], "A")]
    elem = tensor.type.tensor_type.elem_type
    rows = tensor.type.tensor_type.shape.dim[0].dim_value
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    for name, shape, zero in (
        (a_name, [rows, RANK_DIM], (rows, 1)),
        (b_name, [RANK_DIM, sum(widths)], (1, sum(widths))),
    ):
        graph.input.append(helper.make_tensor_value_info(name, elem, shape))
        graph.initializer.append(numpy_helper.from_array(np.zeros(zero, dtype), name))
    a_out, b_out = f"{prefix}/lora_A/MatMul/output_0", f"{prefix}/lora_B/MatMul/output_0"
    add_out = f"{prefix}/lora/Add/output_0"
    nodes += [
        helper.make_node("MatMul", [x, a_name], [a_out], name=f"{prefix}/lora_A/MatMul"),
        helper.make_node("MatMul", [a_out, b_name], [b_out], name=f"{prefix}/lora_B/MatMul"),
        helper.make_node("Add", [nbits_out, b_out], [add_out], name=f"{prefix}/lora/Add"),
    ]
    outputs = [part["out"] for part in parts]
    if kind == "attn" and _packs_into_attention(outputs, index.consumers):
        attention = index.consumers[outputs[0]][0]
        attention.input[0], attention.input[1], attention.input[2] = add_out, "", ""
    else:
        split = f"{weight_prefix}.split"
        graph.initializer.append(numpy_helper.from_array(np.array(widths, np.int64), split))
        nodes.append(helper.make_node("Split", [add_out, split], outputs,
                                      name=f"{prefix}/Split", axis=-1))  # fmt: skip
    old = {id(node) for part in parts for node in part["nodes"]}
    position = min(i for i, node in enumerate(graph.node) if id(node) in old)
    kept = [node for node in graph.node if id(node) not in old]
    del graph.node[:]
    graph.node.extend(kept[:position] + nodes + kept[position:])
    _drop(graph, {name for part in parts for node in part["nodes"] for name in node.input[1:]})


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _without_n(attributes: dict) -> dict:
    return {key: value for key, value in attributes.items() if key != "N"}


def _projection(layer, kind, proj, producer, consumers) -> dict | None:
    """The nodes of one projection with its LoRA branch: base MatMulNBits, A, B, Add."""
    a_weight = _lora_name(layer, kind, proj, "A")
    a_nodes = [n for n in consumers.get(a_weight, []) if n.op_type == "MatMul"]
    if len(a_nodes) != 1:
        return None
    a_node = a_nodes[0]
    b_nodes = consumers.get(a_node.output[0], [])
    if len(b_nodes) != 1 or b_nodes[0].op_type != "MatMul":
        return None
    add_nodes = consumers.get(b_nodes[0].output[0], [])
    if len(add_nodes) != 1 or add_nodes[0].op_type != "Add":
        return None
    add = add_nodes[0]
    other = next(name for name in add.input if name != b_nodes[0].output[0])
    nbits = producer.get(other)
    if nbits is None or nbits.op_type != "MatMulNBits" or nbits.input[0] != a_node.input[0]:
        return None
    if len(consumers.get(nbits.output[0], [])) != 1:
        return None
    return {"x": a_node.input[0], "nbits": nbits, "out": add.output[0], "proj": proj,
            "nodes": [a_node, b_nodes[0], nbits, add], "adapted": True}  # fmt: skip


def _plain_projection(layer, kind, proj, x, consumers) -> dict | None:
    """A projection of the group without LoRA: the MatMulNBits reading ``x`` with its
    weights."""
    prefix = f"model.layers.{layer}.{kind}.{proj}.MatMul."
    found = [
        node
        for node in consumers.get(x, [])
        if node.op_type == "MatMulNBits" and node.input[1].startswith(prefix)
    ]
    if len(found) != 1:
        return None
    nbits = found[0]
    return {"x": x, "nbits": nbits, "out": nbits.output[0], "proj": proj, "nodes": [nbits],
            "adapted": False}  # fmt: skip


def _packs_into_attention(outputs: list[str], consumers) -> bool:
    """q, k and v feed one GroupQueryAttention as its first three inputs."""
    users = [consumers.get(name, []) for name in outputs]
    if any(len(u) != 1 for u in users):
        return False
    node = users[0][0]
    return (
        node.op_type == "GroupQueryAttention"
        and all(u[0] is node for u in users)
        and list(node.input[:3]) == outputs
    )


def _drop(graph, names: set[str]) -> None:
    """Remove those of ``names`` no node reads any more (initializers and graph inputs)."""
    used = {name for node in graph.node for name in node.input}
    gone = {name for name in names if name not in used}
    kept_inits = [i for i in graph.initializer if i.name not in gone]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    kept_inputs = [i for i in graph.input if i.name not in gone]
    del graph.input[:]
    graph.input.extend(kept_inputs)
