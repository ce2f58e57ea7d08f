"""``optimize`` / ``slmops auto-opt`` on the tiny models: export, parity, benchmark, errors."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from slmops.cli import main
from slmops.errors import AdapterMismatch, ConfigError, GateFailure
from slmops.export.optimize import optimize
from slmops.export.runners import encode_prompts, greedy_answers, open_exported
from slmops.export.runners.genai import GenaiRunner
from slmops.inference import greedy_token_ids
from slmops.models import load_causal_lm, load_padding_tokenizer
from slmops.testing import build_tiny_gpt2, build_tiny_llama


def _onnx_files(folder):
    return sorted(path.name for path in folder.iterdir() if "onnx" in path.name)


def test_fp32_export_of_a_run_matches_pytorch(tone_run, tmp_path):
    logs = []
    result = optimize(None, "cpu-fp32", tmp_path / "fp32", run_path=tone_run, log=logs.append)
    folder = result.output_path
    for name in (
        "genai_config.json",
        "model.onnx",
        "export.json",
        "parity.json",
        "benchmark.json",
        "report.md",
        "report.html",
        "build.log",
    ):
        assert (folder / name).is_file(), name
    record = json.loads((folder / "export.json").read_text())
    assert record["exporter"] == "onnxruntime-genai builder" and not record["fell_back"]
    assert record["target"]["name"] == "cpu-fp32"
    assert record["source_model"].endswith("merged")  # full fine-tuning: the run's model

    parity = result.parity
    assert parity["task"] == "classification" and parity["eval_rows"] == 24
    reference = parity["pytorch"]["metrics"]["accuracy"]
    assert reference > 0.8  # the run learned the tones
    assert parity["exported"]["metrics"]["accuracy"] == pytest.approx(reference, abs=0.02)
    assert parity["agreement"]["prompts"] == 16 + 4
    assert parity["agreement"]["mean_prefix_agreement"] > 0.9
    [gate] = result.gates
    assert gate.name == "max_export_degradation[cpu-fp32]" and gate.passed is True

    labels = [row["label"] for row in result.benchmark]
    assert labels == ["pytorch-fp32", "cpu-fp32"]
    for row in result.benchmark:
        assert row["decode_tokens_per_s"] > 0 and row["first_token_ms"] > 0
        assert row["peak_rss_mb"] > row["model_rss_mb"] > 0
        assert row["decoded_tokens"] == 5 * 63  # 5 prompts, 64 tokens, the first timed apart
    assert result.benchmark[0]["decode_speedup"] == 1.0
    report = (folder / "report.md").read_text()
    assert "Parity with PyTorch" in report and "Speed and memory" in report
    assert any("parity cpu-fp32" in line for line in logs)


# The LM head in int4 too (cpu-int4 before it kept the head in int8): the degradation
# this test needs; cpu-int4 itself loses none of the tiny run's answers.
INT4_HEAD = {"matmul_mixed_precision": "last_matmul:int4"}


def test_int4_degradation_fails_the_gate_after_writing_a_loadable_model(tone_run, tmp_path):
    """Int4 with an int4 LM head costs the tiny run 2 of its 24 eval answers (0.958 ->
    0.875): more than the default 0.02, so the gate stops the export, after writing
    everything."""
    out = tmp_path / "int4"
    with pytest.raises(
        GateFailure, match=r"(?s)max_export_degradation\[cpu-int4\].*cpu-int8 or cpu-fp32"
    ):
        optimize(
            None, "cpu-int4", out, run_path=tone_run, benchmark=False, builder_options=INT4_HEAD
        )
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] is False
    [gate] = record["gates"]
    assert gate["observed"] == pytest.approx(2 / 24, abs=1e-6) and gate["threshold"] == 0.02
    parity = json.loads((out / "parity.json").read_text())
    assert parity["exported"]["metrics"]["accuracy"] < parity["pytorch"]["metrics"]["accuracy"]
    assert "FAIL" in (out / "report.md").read_text()
    assert not (out / "benchmark.json").exists()
    assert record["size_mb"] < record["source_size_mb"]

    runner = GenaiRunner(out)  # the folder is a complete onnxruntime-genai model
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = "<|im_start|>user\nThe train was late again.<|im_end|>\n<|im_start|>assistant\n"
    [answer] = greedy_answers(runner, encode_prompts(tokenizer, [prompt]), 5)
    assert 1 <= len(answer) <= 5

    relaxed = optimize(
        None,
        "cpu-int4",
        tmp_path / "relaxed",
        run_path=tone_run,
        benchmark=False,
        fail_on_gates=False,
        builder_options=INT4_HEAD,
    )
    assert relaxed.failed and relaxed.output_path.is_dir()


def test_int8_is_weight_only(tiny_model_dir, tmp_path):
    """cpu-int8 stores 8-bit weights and keeps float activations: dynamic int8 (activations
    quantized per call) answered unlike PyTorch on 93 of 630 rows of the demo task."""
    result = optimize(tiny_model_dir, "cpu-int8", tmp_path / "int8", benchmark=False)
    import onnx

    graph = onnx.load(str(result.output_path / "model.onnx"), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert not ops & {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}
    bits = {
        next(a.i for a in node.attribute if a.name == "bits")
        for node in graph.node
        if node.op_type == "MatMulNBits"
    }
    assert bits == {8}
    assert "MatMul" not in ops  # every weight product quantized, the LM head too
    assert result.parity["agreement"]["prompts"] == 4  # no run: the general prompts only
    assert result.gates[0].passed is None and "no eval set" in result.gates[0].explanation


def test_adapter_is_merged_into_the_float_base_before_export(lora_run, tiny_model_dir, tmp_path):
    result = optimize(
        tiny_model_dir,
        "cpu-fp32",
        tmp_path / "lora",
        adapter_path=lora_run / "adapter",
        benchmark=False,
    )
    assert result.record["adapter"] == str(lora_run / "adapter")
    tokenizer = load_padding_tokenizer(str(tiny_model_dir))
    prompts = ["<|im_start|>user\nThe train was late again.<|im_end|>\n<|im_start|>assistant\n"]
    merged = load_causal_lm(str(lora_run / "merged"))
    expected = greedy_token_ids(merged, tokenizer, prompts, max_new_tokens=8)
    runner = open_exported(result.output_path)
    assert greedy_answers(runner, encode_prompts(tokenizer, prompts), 8) == expected


def test_adapter_of_another_base_is_refused_before_anything_is_written(lora_run, tmp_path):
    other = build_tiny_llama(tmp_path / "wider", hidden_size=96, intermediate_size=192)
    with pytest.raises(AdapterMismatch, match=r"does not fit .* has 96 inputs in the base, 64"):
        optimize(other, "cpu-int4", tmp_path / "out", adapter_path=lora_run / "adapter")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_missing_output_parent_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="parent folder"):
        optimize(tiny_model_dir, "cpu-int4", tmp_path / "no" / "such" / "out")


def test_gpu_target_is_built_on_a_cpu_machine(tiny_model_dir, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: the GPU run test covers it")
    logs = []
    result = optimize(tiny_model_dir, "gpu-fp16", tmp_path / "gpu", log=logs.append)
    config = json.loads((result.output_path / "genai_config.json").read_text())
    assert "cuda" in json.dumps(config["model"]["decoder"]["session_options"])
    assert result.parity is None and result.benchmark is None
    assert "onnxruntime-genai-cuda" in result.record["not_run"]
    assert any("parity and benchmark skipped" in line for line in logs)


@pytest.mark.cuda
def test_gpu_targets_run_on_cuda(tone_run, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-genai-cuda and an NVIDIA GPU")
    for target in ("gpu-fp16", "gpu-int4"):
        result = optimize(None, target, tmp_path / target, run_path=tone_run, fail_on_gates=False)
        assert result.parity["exported"]["metrics"]["accuracy"] >= 0
        assert result.benchmark[1]["decode_tokens_per_s"] > 0


def test_unknown_architecture_falls_back_to_torch_onnx(tmp_path):
    folder = build_tiny_gpt2(tmp_path / "gpt2")
    logs = []
    result = optimize(folder, "cpu-int8", tmp_path / "out", benchmark=False, log=logs.append)
    assert result.record["exporter"] == "torch.onnx" and result.record["fell_back"]
    assert "GPT2LMHeadModel" in result.record["fallback_reason"]
    assert any("falling back" in line for line in logs)
    assert not (result.output_path / "genai_config.json").exists()
    assert result.parity["agreement"]["prompts"] == 4


def test_use_ort_genai_false_exports_with_torch_onnx(tiny_model_dir, tmp_path):
    result = optimize(
        tiny_model_dir, "cpu-fp32", tmp_path / "plain", use_ort_genai=False, benchmark=False
    )
    assert result.record["exporter"] == "torch.onnx" and not result.record["fell_back"]
    assert result.parity["agreement"]["identical_answers"] == 1.0


def test_auto_opt_takes_the_reference_guides_command(lora_run, tiny_model_dir, tmp_path, capsys):
    """The guide's `olive auto-opt` example, flag for flag (bare --use_ort_genai and
    --log_level included), with this project's paths."""
    code = main([
        "auto-opt", "--model_name_or_path", str(tiny_model_dir),
        "--adapter_path", str(lora_run / "adapter"), "--device", "cpu",
        "--provider", "CPUExecutionProvider", "--use_ort_genai",
        "--output_path", str(tmp_path / "onnx"), "--log_level", "1", "--benchmark", "false",
    ])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["target"] == "cpu-int4" and summary["exporter"] == "onnxruntime-genai builder"
    assert summary["parity"]["agreement"]["prompts"] == 4
    assert summary["report"].endswith("report.html")
    assert "merging" in captured.err  # progress on stderr at --log_level 1
    code = main(["auto-opt", "-m", str(tiny_model_dir), "--precision", "fp32", "-o",
                 str(tmp_path / "quiet"), "--parity", "false", "--benchmark", "false",
                 "--log_level", "3"])  # fmt: skip
    assert code == 0 and capsys.readouterr().err == ""


def test_cpu_int4_keeps_the_tiny_runs_answers(tone_run, tmp_path):
    """The default cpu-int4 (LM head in int8) passes the gate the int4 head fails."""
    result = optimize(None, "cpu-int4", tmp_path / "int4", run_path=tone_run, benchmark=False)
    parity = json.loads((result.output_path / "parity.json").read_text())
    exported, pytorch = parity["exported"]["metrics"], parity["pytorch"]["metrics"]
    assert not result.failed
    assert exported["accuracy"] >= pytorch["accuracy"] - 0.02
