"""Targets, the flags that name them, and the auto-opt settings."""

from __future__ import annotations

import json

import pytest

from slmops.cli import main
from slmops.errors import ConfigError
from slmops.export.config import AutoOptConfig, GenerateAdapterConfig, parse_key_values
from slmops.export.targets import TARGETS, resolve_target


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, "cpu-int4"),
        ({"precision": "int8"}, "cpu-int8"),
        ({"device": "cpu", "precision": "fp32"}, "cpu-fp32"),
        ({"device": "gpu"}, "gpu-int4"),
        ({"provider": "CUDAExecutionProvider", "precision": "fp16"}, "gpu-fp16"),
        ({"target": "gpu-fp16", "device": "gpu"}, "gpu-fp16"),
    ],
)
def test_flags_resolve_to_a_target(flags, expected):
    assert resolve_target(flags.pop("target", None), **flags).name == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"device": "gpu", "precision": "int8"}, "int8 is not supported on --device gpu"),
        ({"precision": "fp16"}, "fp16 is not supported on --device cpu"),
        ({"device": "cpu", "provider": "CUDAExecutionProvider"}, "does not run on --device cpu"),
        ({"provider": "TensorrtExecutionProvider"}, "unknown execution provider"),
        ({"target": "cpu-int4", "precision": "fp32"}, "contradicts --target cpu-int4"),
        ({"target": "npu-int4"}, "unknown target 'npu-int4'"),
    ],
)
def test_unsupported_combinations_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        resolve_target(flags.pop("target", None), **flags)


def test_every_target_says_what_it_is_for():
    assert {"cpu-int4", "cpu-int8", "cpu-fp32", "gpu-fp16", "gpu-int4"} <= set(TARGETS)
    for target in TARGETS.values():
        assert target.purpose and target.precision in target.name


def test_targets_command_lists_them(capsys):
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(TARGETS)
    assert lines[0].startswith("cpu-int4") and lines[0].endswith("(default)")
    assert main(["targets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in listed] == list(TARGETS)


def test_builder_options_keep_commas_inside_a_value():
    parsed = parse_key_values("block_size=64, matmul_mixed_precision=last_matmul:int8,x:int4")
    assert parsed == {"block_size": "64", "matmul_mixed_precision": "last_matmul:int8,x:int4"}
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_key_values("block_size")


def test_output_parent_must_exist(tmp_path):
    config = AutoOptConfig(model_name_or_path="m", output_path=tmp_path / "missing" / "out")
    with pytest.raises(ConfigError, match=r"parent folder .*missing does not exist"):
        config.output_dir(config.resolved_target())
    run_config = AutoOptConfig(run_path=tmp_path / "run", target="cpu-int8")
    assert run_config.output_dir(run_config.resolved_target()) == tmp_path / "run/onnx/cpu-int8"


def test_auto_opt_needs_a_model_and_somewhere_to_write():
    with pytest.raises(ValueError, match="model_name_or_path or run_path"):
        AutoOptConfig()
    with pytest.raises(ValueError, match="give output_path"):
        AutoOptConfig(model_name_or_path="m")


def test_generate_adapter_lists_split_on_commas(tmp_path):
    config = GenerateAdapterConfig(
        base_model_path="m", adapter_paths="a, b", adapter_names="x,y", output_path=tmp_path
    )
    assert [path.name for path in config.adapter_paths] == ["a", "b"]
    assert config.adapter_names == ["x", "y"]
    assert config.resolved_target().name == "cpu-int4"


def test_bad_flag_is_named_on_the_command_line(capsys, tmp_path):
    code = main(
        ["auto-opt", "-m", "m", "-o", str(tmp_path / "o"), "--device", "gpu", "--precision", "int8"]
    )
    assert code == 1
    assert "--precision int8 is not supported on --device gpu" in capsys.readouterr().err
