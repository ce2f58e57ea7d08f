"""The cpu-int4 target's builder options: they reach onnxruntime-genai's builder, a
user's --builder_options win, and the model they build loads (the tiny model ties its LM
head to its embedding, like SmolLM2)."""

from __future__ import annotations

import pytest

from slmops.export import exporter
from slmops.export.targets import TARGETS


def _captured_options(monkeypatch, tmp_path, **kwargs) -> dict:
    seen = {}

    def fake_build(model_dir, out_dir, *, options, **_):
        seen.update(options)

    monkeypatch.setattr(exporter, "build_with_genai", fake_build)
    exporter.export_model(tmp_path, tmp_path, TARGETS["cpu-int4"], **kwargs)
    return seen


def test_cpu_int4_options_reach_the_builder(monkeypatch, tmp_path):
    options = _captured_options(monkeypatch, tmp_path)
    assert options == dict(TARGETS["cpu-int4"].builder_options)
    assert options["algo_config"] == "k_quant"
    assert options["matmul_mixed_precision"] == "last_matmul:int8"


def test_a_users_builder_options_win_over_the_targets(monkeypatch, tmp_path):
    mine = {"algo_config": "rtn", "block_size": "16"}
    options = _captured_options(monkeypatch, tmp_path, builder_options=mine)
    assert options == {**dict(TARGETS["cpu-int4"].builder_options), **mine}


@pytest.fixture(scope="module")
def int4_export(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int4")
    record = exporter.export_model(tiny_model_dir, folder, TARGETS["cpu-int4"])
    assert record["exporter"] == exporter.GENAI_BUILDER and not record["fell_back"]
    return folder


def test_cpu_int4_default_builds_a_loadable_int4_model(int4_export):
    import onnx

    from slmops.export.runners import open_exported

    graph = onnx.load(str(int4_export / "model.onnx"), load_external_data=False).graph
    nbits = {node.name: node for node in graph.node if node.op_type == "MatMulNBits"}
    assert nbits, "no weight-only quantized MatMul in the cpu-int4 export"
    bits = {
        name: next(a.i for a in node.attribute if a.name == "bits") for name, node in nbits.items()
    }
    head = [name for name in bits if "lm_head" in name]
    assert head and all(bits[name] == 8 for name in head), f"LM head not int8: {bits}"
    assert {bits[name] for name in bits if name not in head} == {4}, bits
    runner = open_exported(int4_export)
    assert len(list(runner.stream_ids([1, 2, 3], 4, stop_at_eos=False))) == 4
