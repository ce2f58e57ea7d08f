"""What evaluate leaves for the stages after it: the eval set it scored (read back only when
it is the set the reader would build) and the fine-tuned answers (reused only for the same
eval set, weights and generation)."""

from __future__ import annotations

import json
import shutil

import pytest

from slmops.evaluation import answers, eval_set
from slmops.evaluation.config import config_for_run
from slmops.evaluation.run import run as evaluate
from slmops.inference import decode_answers
from slmops.layout import TrainingLayout
from slmops.models import load_padding_tokenizer


def _copy(run, tmp_path):
    """A copy of a session's training folder, which tests must not write into."""
    skip = shutil.ignore_patterns("checkpoints", "evaluation", "onnx")
    return shutil.copytree(run, tmp_path / "run", ignore=skip)


def _stored_plan(run, **settings):
    """The run's eval set, built from the data and stored where evaluate stores it."""
    plan = eval_set.build(config_for_run(run, **settings))
    eval_set.store(plan, TrainingLayout(run).eval_set)
    return plan


def _same_set(left, right) -> None:
    assert left.fingerprint == right.fingerprint
    assert left.data.eval == right.data.eval and left.data.eval_labels == right.data.eval_labels
    assert left.data.fingerprint == right.data.fingerprint
    assert (left.task, left.primary, left.labels) == (right.task, right.primary, right.labels)
    assert left.references == right.references
    assert left.max_new_tokens == right.max_new_tokens


def test_evaluate_stores_the_eval_set_and_the_fine_tuned_answers(tone_run, tmp_path):
    run = _copy(tone_run, tmp_path)
    result = evaluate(config_for_run(run))
    layout = TrainingLayout(run)
    stored = json.loads(layout.eval_set.read_text())
    assert stored["task"] == "classification" and stored["primary_metric"] == "accuracy"
    assert len(stored["rows"]) == result.summary["eval_rows"] == 24
    assert stored["max_new_tokens"] == result.summary["max_new_tokens"]
    assert stored["data_fingerprint"] == result.summary["data"]["fingerprint"]
    assert {"prompt", "completion", "reference", "label"} == set(stored["rows"][0])

    # The stored token ids are the answers predictions.jsonl shows.
    kept = json.loads(layout.fine_tuned_answers.read_text())
    assert kept["eval_set"] == stored["fingerprint"]
    assert kept["generation"]["batch_size"] == 16 and kept["generation"]["device"] == "cpu"
    [identity] = kept["weights"]  # full fine-tuning: merged/ itself
    assert set(identity) == {"model"} and "model.safetensors" in identity["model"]
    tokenizer = load_padding_tokenizer(str(run / "merged"))
    rows = [json.loads(line) for line in (layout.evaluation / "predictions.jsonl").open()]
    assert decode_answers(tokenizer, kept["token_ids"]) == [r["fine_tuned_answer"] for r in rows]


def test_the_stored_eval_set_is_the_set_built_again(tone_run, tmp_path):
    run = _copy(tone_run, tmp_path)
    built = _stored_plan(run)
    logs = []
    read = eval_set.for_run(run, log=logs.append)
    assert any("the 24 rows evaluate stored" in line for line in logs)
    assert read.data.train == []  # nothing that scores reads the training rows
    _same_set(read, built)
    TrainingLayout(run).eval_set.unlink()
    _same_set(eval_set.for_run(run), built)


def test_a_stored_eval_set_is_not_used_for_other_settings(tone_run, tmp_path):
    run = _copy(tone_run, tmp_path)
    _stored_plan(run)
    logs = []
    fewer = eval_set.for_run(run, max_eval_samples=5, log=logs.append)
    assert len(fewer.data.eval) == 5
    assert any("built from the data" in line and "other data, settings" in line for line in logs)
    longer = eval_set.for_run(run, max_new_tokens=40)
    assert longer.max_new_tokens == 40


def test_a_stored_eval_set_is_not_used_when_its_data_changed(tone_run, tmp_path):
    run = _copy(tone_run, tmp_path)
    data = tmp_path / "data.jsonl"
    shutil.copy(config_for_run(run).data_files[0], data)
    stored = _stored_plan(run, data_files=[str(data)])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows:
        row["phrase"] = row["phrase"].replace(".", "!")
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    logs = []
    rebuilt = eval_set.for_run(run, data_files=[str(data)], log=logs.append)
    assert any("other data, settings" in line for line in logs)
    assert rebuilt.data.fingerprint != stored.data.fingerprint


def test_an_edited_stored_eval_set_is_not_used(tone_run, tmp_path):
    run = _copy(tone_run, tmp_path)
    built = _stored_plan(run)
    path = TrainingLayout(run).eval_set
    stored = json.loads(path.read_text())
    stored["rows"][0]["reference"] = "joyful and more"
    path.write_text(json.dumps(stored))
    logs = []
    _same_set(eval_set.for_run(run, log=logs.append), built)
    assert any("does not match its own digest" in line for line in logs)


@pytest.fixture
def stored_answers(tiny_model_dir, tiny_tokenizer, tmp_path):
    prompts = [
        f"<|im_start|>user\nphrase {i}<|im_end|>\n<|im_start|>assistant\n" for i in range(20)
    ]
    generation = answers.generation(
        tiny_tokenizer, prompts, max_new_tokens=8, batch_size=16, device="cpu"
    )
    path = tmp_path / "answers.json"
    answers.write(
        path,
        eval_set="a" * 64,
        weights=[answers.weights(tiny_model_dir, None)],
        generation=generation,
        token_ids=[[5, 6]] * 20,
    )
    return path, prompts, generation


def test_stored_answers_are_reused_for_the_same_set_weights_and_generation(
    stored_answers, tiny_model_dir, tiny_tokenizer, tmp_path
):
    path, prompts, generation = stored_answers
    found, why = answers.reusable(
        path, eval_set="a" * 64, model_dir=tiny_model_dir, adapter=None, generation=generation
    )
    assert found == [[5, 6]] * 20 and why == ""
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")  # the same weights elsewhere
    found, _ = answers.reusable(
        path, eval_set="a" * 64, model_dir=copy, adapter=None, generation=generation
    )
    assert found is not None


def test_stored_answers_are_not_reused_otherwise(
    stored_answers, tiny_model_dir, tiny_tokenizer, tmp_path
):
    path, prompts, generation = stored_answers
    same = {"eval_set": "a" * 64, "model_dir": tiny_model_dir, "adapter": None}

    found, why = answers.reusable(path, **{**same, "eval_set": "b" * 64}, generation=generation)
    assert found is None and "another eval set" in why

    batched = answers.generation(
        tiny_tokenizer, prompts, max_new_tokens=8, batch_size=8, device="cpu"
    )
    found, why = answers.reusable(path, **same, generation=batched)
    assert found is None and "generated otherwise (batch_size)" in why
    one_batch = [
        answers.generation(tiny_tokenizer, prompts, max_new_tokens=8, batch_size=size, device="cpu")
        for size in (20, 64)
    ]
    assert one_batch[0] == one_batch[1]  # 20 prompts are one batch either way
    other_prompts = answers.generation(
        tiny_tokenizer, prompts[::-1], max_new_tokens=8, batch_size=16, device="cpu"
    )
    found, why = answers.reusable(path, **same, generation=other_prompts)
    assert found is None and "prompt_ids_sha256" in why

    changed = shutil.copytree(tiny_model_dir, tmp_path / "changed")
    config = json.loads((changed / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (changed / "config.json").write_text(json.dumps(config))
    found, why = answers.reusable(path, **{**same, "model_dir": changed}, generation=generation)
    assert found is None and "other weights" in why
    found, why = answers.reusable(
        path, **{**same, "adapter": tiny_model_dir}, generation=generation
    )
    assert found is None and "other weights" in why
