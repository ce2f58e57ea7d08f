"""Parity's PyTorch answers to the eval rows are evaluate's when they are the same answers,
and the parity result is the same with them as with answers generated again."""

from __future__ import annotations

import json
import shutil

import pytest

from slmops.evaluation import eval_set
from slmops.evaluation.config import config_for_run
from slmops.evaluation.run import run as evaluate
from slmops.export.optimize import optimize
from slmops.inference import greedy_token_ids
from slmops.layout import TrainingLayout
from slmops.models import load_causal_lm, load_padding_tokenizer


def _evaluated_copy(run, tmp_path):
    """A copy of a session's training folder (tests must not write into it), evaluated."""
    skip = shutil.ignore_patterns("checkpoints", "evaluation", "onnx")
    copy = shutil.copytree(run, tmp_path / "run", ignore=skip)
    evaluate(config_for_run(copy, fail_on_gates=False))
    return copy


def _parity(run, out, **settings):
    return optimize(
        None, "cpu-fp32", out, run_path=run, benchmark=False, fail_on_gates=False, **settings
    )


def _comparable(summary: dict) -> dict:
    return {
        key: value for key, value in summary.items() if key not in ("seconds", "reference_answers")
    }


@pytest.mark.parametrize("trained", ["tone_run", "lora_run"])
def test_reused_answers_give_the_same_parity_as_answers_generated_again(trained, request, tmp_path):
    """Full fine-tuning (merged/ scored and exported) and LoRA (base + adapter scored,
    the run's merged/ exported): both reuse evaluate's answers, with the same result."""
    run = _evaluated_copy(request.getfixturevalue(trained), tmp_path)
    answers_file = TrainingLayout(run).fine_tuned_answers
    logs = []
    reused = _parity(run, tmp_path / "reused", log=logs.append)
    assert reused.parity["reference_answers"] == {"reused": True, "source": str(answers_file)}
    assert any("eval answers are evaluate's" in line for line in logs)
    on_disk = json.loads((reused.output_path / "parity.json").read_text())
    assert on_disk["reference_answers"]["reused"] is True

    answers_file.unlink()
    generated = _parity(run, tmp_path / "generated")
    assert generated.parity["reference_answers"]["reused"] is False
    assert "no stored answers" in generated.parity["reference_answers"]["why"]
    assert _comparable(reused.parity) == _comparable(generated.parity)
    assert [gate.as_dict() for gate in reused.gates] == [gate.as_dict() for gate in generated.gates]


def test_evaluates_lora_answers_are_the_merged_models(lora_run, tmp_path):
    """Evaluate merges the adapter in memory; its answers are token for token those of
    the run's merged/ folder, which it records as the same weights."""
    run = _evaluated_copy(lora_run, tmp_path)
    stored = json.loads(TrainingLayout(run).fine_tuned_answers.read_text())
    assert [sorted(identity) for identity in stored["weights"]] == [["adapter", "model"], ["model"]]
    plan = eval_set.for_run(run)
    merged = load_causal_lm(str(run / "merged"))
    tokenizer = load_padding_tokenizer(str(run / "merged"))
    prompts = [example.prompt for example in plan.data.eval]
    expected = greedy_token_ids(
        merged, tokenizer, prompts, max_new_tokens=plan.max_new_tokens, batch_size=16
    )
    assert stored["token_ids"] == expected


def test_an_adapter_merged_by_hand_reuses_them_too(lora_run, tmp_path):
    """`slmops auto-opt --adapter_path`: the merge made in the task is base + adapter, the
    weights evaluate scored."""
    run = _evaluated_copy(lora_run, tmp_path)
    result = _parity(run, tmp_path / "by-hand", adapter_path=run / "adapter")
    assert result.record["adapter"] == str(run / "adapter")
    assert result.parity["reference_answers"]["reused"] is True


def test_answers_of_other_weights_or_settings_are_not_reused(tone_run, tmp_path):
    run = _evaluated_copy(tone_run, tmp_path)
    answers_file = TrainingLayout(run).fine_tuned_answers
    stored = json.loads(answers_file.read_text())
    stored["weights"][0]["model"]["model.safetensors"]["sha256"] = "0" * 64
    stored["weights"][0]["model"]["model.safetensors"]["mtime_ns"] = 0
    answers_file.write_text(json.dumps(stored))
    result = _parity(run, tmp_path / "other-weights")
    assert result.parity["reference_answers"] == {
        "reused": False,
        "why": "the stored answers come from other weights",
    }
    # another eval set: fewer rows than evaluate scored
    evaluate(config_for_run(run, fail_on_gates=False, max_eval_samples=6))
    result = _parity(run, tmp_path / "other-set", agreement_prompts=2)
    assert result.parity["reference_answers"]["why"] == "the stored answers are of another eval set"
