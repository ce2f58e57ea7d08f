"""`slmops finetune` on the real bundled SmolLM2 with the shipped tone run config (a few
steps each: the 200-step accuracy run is `make demo`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TONE_RUN = ROOT / "include" / "configs" / "finetune" / "phrase_tones.yaml"


def finetune(out: Path, *flags: str) -> dict:
    command = [
        sys.executable, "-m", "slmops", "finetune", "--config", str(TONE_RUN), "-o", str(out),
        "--max_steps", "2", "--eval_steps", "2", "--logging_steps", "1",
        "--max_eval_samples", "8", *flags,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 2/2" in done.stderr
    return json.loads((out / "training_metrics.json").read_text())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "run"
    return out, finetune(out)


def test_lora_on_the_bundled_model_writes_a_loadable_merged_model(lora_run):
    from slmops.inference import greedy_complete
    from slmops.models import load_causal_lm, load_tokenizer

    out, metrics = lora_run
    assert metrics["target_modules"] == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj",
    ]  # fmt: skip
    assert metrics["trainable_parameters"] == 4_884_480  # r=16 on all 7 projections x 30 layers
    assert metrics["dataset"]["train_examples"] == 567
    assert metrics["dataset"]["truncated"] == 0
    assert len(load_file(out / "adapter" / "adapter_model.safetensors")) == 30 * 7 * 2
    merged = load_causal_lm(str(out / "merged"))
    assert merged.num_parameters() == 134_515_008
    tokenizer = load_tokenizer(str(out / "merged"))
    [answer] = greedy_complete(
        merged, tokenizer, ["<|im_start|>user\nHi<|im_end|>\n"], max_new_tokens=4
    )
    assert isinstance(answer, str)


def test_qlora_holds_the_weights_in_a_third_of_lora_memory(lora_run, tmp_path):
    _, lora = lora_run
    qlora = finetune(tmp_path / "qlora", "--method", "qlora", "--merge_adapter", "false")
    ratio = qlora["model_memory_mb"] / lora["model_memory_mb"]
    assert ratio <= 0.35, ratio
    assert qlora["final_train_loss"] == pytest.approx(lora["final_train_loss"], rel=0.2)


def test_evaluate_scores_the_bundled_base_and_its_adapter(lora_run, tmp_path):
    """`slmops evaluate` on SmolLM2 + the 2-step adapter: both models answer the 8 eval
    rows, and a model this undertrained (it no longer names a label) is stopped by the
    accuracy floor and the improvement gate."""
    out, _ = lora_run
    command = [
        sys.executable, "-m", "slmops", "evaluate", "--run_path", str(out),
        "-o", str(tmp_path / "e"), "--validation_path", str(tmp_path / "none"),
    ]  # fmt: skip
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and "no such validation report" in refused.stderr
    done = subprocess.run(command[:-2], cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert summary["eval_rows"] == 8 and summary["task"] == "classification"
    assert summary["labels"] == ["angry", "curious", "fearful", "grateful", "joyful", "sad"]
    base, tuned = (summary["models"][name]["metrics"] for name in ("base", "fine_tuned"))
    assert tuned["eval_loss"] < base["eval_loss"]  # two steps already lower the loss
    assert summary["models"]["fine_tuned"]["adapter"] == str(out / "adapter")
    verdicts = {g["name"]: g["passed"] for g in summary["gates"]}
    assert verdicts == {
        "loss_gap": True,
        "rising_eval_loss": None,  # one evaluation only
        "min_metric[accuracy]": False,
        "min_improvement": False,
    }
    assert done.returncode == 1 and "2 gates failed" in done.stderr
    assert "- min_metric[accuracy]: fine-tuned accuracy" in done.stderr
    assert (tmp_path / "e" / "report.html").stat().st_size > 10_000


def test_auto_opt_int4_of_the_bundled_run_chats_in_onnxruntime_genai(lora_run, tmp_path):
    """`slmops auto-opt --target cpu-int4` on SmolLM2 + the 2-step adapter: a folder that
    onnxruntime-genai loads and chats with (its own tokenizer and chat template), with
    parity and benchmark JSON beside it."""
    import onnxruntime_genai as og

    out, _ = lora_run
    onnx_dir = tmp_path / "cpu-int4"
    command = [
        sys.executable, "-m", "slmops", "auto-opt", "--run_path", str(out), "--target",
        "cpu-int4", "-o", str(onnx_dir), "--fail_on_gates", "false",
        "--agreement_prompts", "4", "--benchmark_prompts", "1", "--benchmark_new_tokens", "16",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["exporter"] == "onnxruntime-genai builder"
    assert summary["size_mb"] < 120  # int4 weights: ~84 MB against 513 MB in float32
    parity = json.loads((onnx_dir / "parity.json").read_text())
    assert parity["eval_rows"] == 8 and parity["agreement"]["prompts"] == 4 + 4
    benchmark = json.loads((onnx_dir / "benchmark.json").read_text())
    assert [row["label"] for row in benchmark] == ["pytorch-fp32", "cpu-int4"]
    assert benchmark[1]["size_mb"] < benchmark[0]["size_mb"] / 4

    model = og.Model(str(onnx_dir))
    tokenizer = og.Tokenizer(model)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    ids = tokenizer.encode(prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 24)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    while not generator.is_done():
        generator.generate_next_token()
    answer = tokenizer.decode(generator.get_sequence(0)[len(ids) :])
    assert "Paris" in answer, answer
