"""Packed LoRA projections (q/k/v, gate/up) in an int4 multi-adapter base: same logits as
the unpacked graph, with fewer nodes."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from slmops.export import multi_adapter
from slmops.export.lora_fusion import fuse_adapter, fuse_lora_model
from slmops.export.lora_graph import lora_inputs, write_adapter
from slmops.export.quantize import load_model
from slmops.export.targets import TARGETS

PROMPT = list(range(5, 25))


@pytest.fixture(scope="module")
def unpacked_and_packed(two_adapters, peaked_model_dir, tmp_path_factory):
    """The int4 multi-adapter folder built without packing, and a copy packed afterwards.
    fp32 activations (accuracy_level 1), so both compute the same sums in float."""
    target = replace(
        TARGETS["cpu-int4"],
        builder_options=(*TARGETS["cpu-int4"].builder_options, ("accuracy_level", "1")),
    )
    root = tmp_path_factory.mktemp("fusion")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multi_adapter, "fuse_lora_model", lambda path: 0)
        patch.setattr(multi_adapter, "fuse_adapter", lambda weights, inputs: weights)
        unpacked = multi_adapter.generate_adapters(
            peaked_model_dir, list(two_adapters.values()), root / "unpacked",
            target=target, adapter_names=list(two_adapters),
        ).output_path  # fmt: skip
    packed = root / "packed"
    shutil.copytree(unpacked, packed)
    assert fuse_lora_model(packed / "model.onnx") == 2 * 2  # 2 layers x (q/k/v, gate/up)
    inputs = lora_inputs(packed / "model.onnx")
    import onnxruntime as ort

    for name in two_adapters:
        stored = ort.AdapterFormat.read_adapter(str(unpacked / f"{name}.onnx_adapter"))
        weights = {key: value.numpy() for key, value in stored.get_parameters().items()}
        write_adapter(fuse_adapter(weights, inputs), packed / f"{name}.onnx_adapter")
    return unpacked, packed


def _logits_and_tokens(folder, adapter):
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    adapters = og.Adapters(model)
    adapters.load(str(folder / f"{adapter}.onnx_adapter"), adapter) if adapter else None
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(PROMPT) + 6, do_sample=False)
    generator = og.Generator(model, params)
    if adapter:
        generator.set_active_adapter(adapters, adapter)
    generator.append_tokens(PROMPT)
    logits = np.array(generator.get_logits()).ravel()
    tokens = []
    for _ in range(6):
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return logits, tokens


@pytest.mark.parametrize("adapter", [None, "label", "explain"])
def test_packed_graph_gives_the_same_logits(unpacked_and_packed, adapter):
    unpacked, packed = unpacked_and_packed
    expected_logits, expected_tokens = _logits_and_tokens(unpacked, adapter)
    logits, tokens = _logits_and_tokens(packed, adapter)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-3, rtol=1e-4)
    assert tokens == expected_tokens


def test_packing_leaves_fewer_nodes_and_one_attention_input(unpacked_and_packed):
    unpacked, packed = unpacked_and_packed
    before, after = load_model(unpacked / "model.onnx"), load_model(packed / "model.onnx")
    count = lambda model, op: sum(node.op_type == op for node in model.graph.node)  # noqa: E731
    # per layer: q, k, v -> qkv and gate, up -> gate_up (base and LoRA alike)
    assert count(before, "MatMulNBits") - count(after, "MatMulNBits") == 2 * 3
    assert count(before, "MatMul") - count(after, "MatMul") == 2 * 2 * 3
    assert count(before, "Add") - count(after, "Add") == 2 * 3
    for node in after.graph.node:
        if node.op_type == "GroupQueryAttention":
            assert node.input[0].endswith("qkv_proj/lora/Add/output_0")
            assert node.input[1] == node.input[2] == ""
    inputs = lora_inputs(packed / "model.onnx")
    assert inputs["model.layers.0.attn.qkv_proj.lora_B.MatMul.weight"] == ["lora_r", 128]
    assert "model.layers.0.attn.q_proj.lora_A.MatMul.weight" not in inputs


def test_an_adapter_missing_part_of_a_group_is_left_unpacked():
    weights = {
        f"model.layers.0.attn.{proj}.lora_{side}.MatMul.weight": np.ones((2, 2), np.float32)
        for proj in ("q_proj", "v_proj")
        for side in "AB"
    }
    packed_inputs = {"model.layers.0.attn.qkv_proj.lora_A.MatMul.weight"}
    assert fuse_adapter(weights, packed_inputs).keys() == weights.keys()
