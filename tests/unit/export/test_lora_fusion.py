"""Packed LoRA projections (q/k/v, gate/up) in an int4 multi-adapter base: same logits as
the unpacked graph, with fewer nodes."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from slmops.export import multi_adapter
from slmops.export.lora_fusion import fuse_adapter, fuse_lora_model, packed_layout
from slmops.export.lora_graph import lora_inputs, write_adapter
from slmops.export.quantize import load_model
from slmops.export.targets import TARGETS

PROMPT = list(range(5, 25))


def _unpacked_and_packed(adapters: dict, base, root):
    """The int4 multi-adapter folder built without packing, and a copy packed afterwards.
    fp32 activations (accuracy_level 1), so both compute the same sums in float."""
    target = replace(
        TARGETS["cpu-int4"],
        builder_options=(*TARGETS["cpu-int4"].builder_options, ("accuracy_level", "1")),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multi_adapter, "fuse_lora_model", lambda path: 0)
        patch.setattr(multi_adapter, "fuse_adapter", lambda weights, layout: weights)
        unpacked = multi_adapter.generate_adapters(
            base, list(adapters.values()), root / "unpacked",
            target=target, adapter_names=list(adapters),
        ).output_path  # fmt: skip
    packed = root / "packed"
    shutil.copytree(unpacked, packed)
    packed_groups = fuse_lora_model(packed / "model.onnx")
    layout = packed_layout(packed / "model.onnx")
    import onnxruntime as ort

    for name in adapters:
        stored = ort.AdapterFormat.read_adapter(str(unpacked / f"{name}.onnx_adapter"))
        weights = {key: value.numpy() for key, value in stored.get_parameters().items()}
        write_adapter(fuse_adapter(weights, layout), packed / f"{name}.onnx_adapter")
    return unpacked, packed, packed_groups


@pytest.fixture(scope="module")
def unpacked_and_packed(two_adapters, peaked_model_dir, tmp_path_factory):
    """Adapters on all seven projections: both groups of both layers pack."""
    root = tmp_path_factory.mktemp("fusion")
    unpacked, packed, groups = _unpacked_and_packed(two_adapters, peaked_model_dir, root)
    assert groups == 2 * 2  # 2 layers x (q/k/v, gate/up)
    return unpacked, packed


@pytest.fixture(scope="module")
def partly_adapted(part_of_each_group_adapter, peaked_model_dir, tmp_path_factory):
    """An adapter on q, v and up only (part of each group): the groups pack all the same,
    the projections without LoRA as zero columns of the packed B."""
    root = tmp_path_factory.mktemp("partial-fusion")
    unpacked, packed, groups = _unpacked_and_packed(
        {"partial": part_of_each_group_adapter}, peaked_model_dir, root
    )
    assert groups == 2 * 2
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


def test_partly_adapted_groups_give_the_same_logits(partly_adapted):
    unpacked, packed = partly_adapted
    base_logits, _ = _logits_and_tokens(packed, None)
    expected_logits, expected_tokens = _logits_and_tokens(unpacked, "partial")
    logits, tokens = _logits_and_tokens(packed, "partial")
    np.testing.assert_allclose(logits, expected_logits, atol=1e-3, rtol=1e-4)
    assert tokens == expected_tokens
    assert np.abs(logits - base_logits).max() > 0.1  # the adapter does change the answer
    np.testing.assert_allclose(_logits_and_tokens(unpacked, None)[0], base_logits, atol=1e-3)


def test_partly_adapted_groups_are_one_matmul_and_one_lora_branch(partly_adapted):
    unpacked, packed = partly_adapted
    before, after = load_model(unpacked / "model.onnx"), load_model(packed / "model.onnx")
    count = lambda model, op: sum(node.op_type == op for node in model.graph.node)  # noqa: E731
    # per layer: q, k, v -> qkv and gate, up -> gate_up; LoRA branches q, v -> one
    assert count(before, "MatMulNBits") - count(after, "MatMulNBits") == 2 * 3
    assert count(before, "MatMul") - count(after, "MatMul") == 2 * 2
    assert count(before, "Add") - count(after, "Add") == 2
    layout = packed_layout(packed / "model.onnx")
    assert layout["model.layers.1.attn.qkv_proj"] == {
        "projections": [["q_proj", 64], ["k_proj", 32], ["v_proj", 32]],
        "adapted": ["q_proj", "v_proj"],
    }
    assert layout["model.layers.1.mlp.gate_up_proj"]["adapted"] == ["up_proj"]
    inputs = lora_inputs(packed / "model.onnx")
    assert inputs["model.layers.0.attn.qkv_proj.lora_B.MatMul.weight"] == ["lora_r", 128]


def test_fuse_adapter_places_b_at_its_projections_columns():
    rng = np.random.default_rng(0)
    name = "model.layers.0.attn.{}.lora_{}.MatMul.weight"
    weights = {
        name.format("q_proj", "A"): rng.standard_normal((8, 2), np.float32),
        name.format("q_proj", "B"): rng.standard_normal((2, 4), np.float32),
        name.format("v_proj", "A"): rng.standard_normal((8, 3), np.float32),
        name.format("v_proj", "B"): rng.standard_normal((3, 2), np.float32),
    }
    layout = {
        "model.layers.0.attn.qkv_proj": {
            "projections": [["q_proj", 4], ["k_proj", 2], ["v_proj", 2]],
            "adapted": ["q_proj", "v_proj"],
        }
    }
    fused = fuse_adapter(weights, layout)
    assert sorted(fused) == [name.format("qkv_proj", side) for side in "AB"]
    a, b = fused[name.format("qkv_proj", "A")], fused[name.format("qkv_proj", "B")]
    x = rng.standard_normal((1, 8), np.float32)
    q = x @ weights[name.format("q_proj", "A")] @ weights[name.format("q_proj", "B")]
    v = x @ weights[name.format("v_proj", "A")] @ weights[name.format("v_proj", "B")]
    np.testing.assert_allclose(x @ a @ b, np.concatenate([q, np.zeros((1, 2)), v], 1), rtol=1e-5)


def test_an_adapter_that_does_not_match_the_layout_is_left_unpacked():
    weights = {
        f"model.layers.0.attn.{proj}.lora_{side}.MatMul.weight": np.ones((2, 2), np.float32)
        for proj in ("q_proj", "v_proj")
        for side in "AB"
    }
    layout = {
        "model.layers.0.attn.qkv_proj": {
            "projections": [["q_proj", 2], ["k_proj", 2], ["v_proj", 2]],
            "adapted": ["q_proj", "k_proj", "v_proj"],  # the base adapts k too
        }
    }
    assert fuse_adapter(weights, layout).keys() == weights.keys()
