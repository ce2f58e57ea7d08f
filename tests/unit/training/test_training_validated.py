"""Training reads the data again: it trains only when they are the data the validate stage
checked (the same fingerprint), and refuses clearly, before touching its folder, when a
file changed in between."""

from __future__ import annotations

import json

import pytest

from slmops.errors import ConfigError, DataError
from slmops.layout import RunLayout
from slmops.pipeline import stages
from slmops.pipeline.plan import prepare
from slmops.testing import tiny_pipeline_data, tiny_pipeline_params


def validated_plan(tmp_path, tiny_model_dir, **params):
    """A validated slm_finetune run of the tiny model: (plan, data root)."""
    data_root = tiny_pipeline_data(tmp_path / "data", tiny_model_dir)
    (data_root / "tones_suite.yaml").write_text("name: tones\nlabel_column: tone\n")
    plan = prepare(
        tiny_pipeline_params("checked", max_steps=2, eval_steps=2, **params),
        dag_id="slm_finetune",
        run_id="r1",
        artifacts_root=tmp_path / "artifacts",
        data_roots=[data_root],
    )
    stages.validate(plan["validation"])
    return plan, data_root


@pytest.fixture
def planned(tmp_path, tiny_model_dir):
    return validated_plan(tmp_path, tiny_model_dir)


def test_the_validated_data_are_trained(planned):
    plan, _ = planned
    run = RunLayout(plan["run_dir"])
    assert plan["finetune"]["validation_path"] == str(run.validation)
    trained = stages.finetune(plan["finetune"])
    assert trained["global_step"] == 2
    validated = json.loads(run.validation_report.read_text())["data"]["fingerprint"]
    metrics = json.loads(run.finetune.metrics.read_text())
    assert metrics["dataset"]["fingerprint"] == validated


def test_a_suite_label_column_checks_labels_without_changing_the_split(tmp_path, tiny_model_dir):
    # The suite names the label column, the run does not stratify by it: validation must
    # still check the split training makes, or training would see other eval rows.
    plan, _ = validated_plan(tmp_path, tiny_model_dir, label_field=None, suite="tones_suite.yaml")
    run = RunLayout(plan["run_dir"])
    report = json.loads(run.validation_report.read_text())
    assert report["data"]["label_column"] == "tone"
    assert "label_field" not in plan["finetune"] or plan["finetune"]["label_field"] is None
    stages.finetune(plan["finetune"])
    metrics = json.loads(run.finetune.metrics.read_text())
    assert metrics["dataset"]["fingerprint"] == report["data"]["fingerprint"]


def test_data_changed_after_validation_are_refused_naming_both_fingerprints(planned):
    plan, data_root = planned
    run = RunLayout(plan["run_dir"])
    validated = json.loads(run.validation_report.read_text())["data"]["fingerprint"]
    data = data_root / "tones.jsonl"
    rows = data.read_text().splitlines()
    changed = {**json.loads(rows[0]), "tone": "angry" if '"joyful"' in rows[0] else "joyful"}
    data.write_text("\n".join([json.dumps(changed), *rows[1:]]) + "\n")

    with pytest.raises(DataError) as refused:
        stages.finetune(plan["finetune"])
    message = str(refused.value)
    assert f"validated fingerprint {validated}" in message
    assert str(run.validation_report) in message and str(data) in message
    now = message.split("now give fingerprint ", 1)[1].split(",", 1)[0]
    assert len(now) == 64 and now != validated
    assert not run.finetune.run_record.exists()  # refused before the folder was claimed
    assert not run.finetune.checkpoints.exists()


def test_a_missing_validation_report_is_refused(planned):
    plan, _ = planned
    RunLayout(plan["run_dir"]).validation_report.unlink()
    with pytest.raises(ConfigError, match="no validation report; run the validate stage"):
        stages.finetune(plan["finetune"])


def test_without_a_validation_report_nothing_is_compared(finetune_config):
    config = finetune_config(max_steps=1, eval_steps=1)
    assert config.validation_path is None  # the CLI default: `slmops finetune` on its own
    assert "validation_path" not in config.identity()  # a retry may add it and resume
