"""ValidateDatasetOperator on the plan's validation settings: clean data passes and is
recorded, broken data fails the task naming the check, a missing file names the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.prepare import PrepareRunOperator
from slmops_airflow.validate import ValidateDatasetOperator


@pytest.fixture
def plan(roots, form, context, tiny_model_dir):
    """The run's plan, its base model (the tiny Llama, for its tokenizer) in the data root."""
    shutil.copytree(tiny_model_dir, roots.data / "tiny")
    params = {**form, "model_name_or_path": "tiny"}
    return PrepareRunOperator(task_id="prepare").execute(context(params=params))


def validate(settings, context) -> dict:
    return ValidateDatasetOperator(task_id="validate", config=settings).execute(context())


def test_clean_data_passes_and_the_report_is_written(plan, context):
    settings = plan["validation"]
    assert settings["model_name_or_path"].endswith("/tiny")
    result = validate(settings, context)
    assert (result["passed"], result["train_rows"], result["eval_rows"]) == (True, 36, 12)
    assert len(result["fingerprint"]) == 64
    assert result["output_path"] == settings["output_path"]
    report = json.loads((Path(plan["run_dir"]) / "validation/validation.json").read_text())
    assert report["passed"] is True and report["suite"] == "default"
    assert report["data"]["fingerprint"] == result["fingerprint"]


def test_broken_data_fails_naming_the_check_and_keeps_the_report(plan, roots, context):
    rows = (roots.data / "tones.jsonl").read_text().splitlines()
    (roots.data / "tones.jsonl").write_text("\n".join(rows + rows[:6]) + "\n")  # 6 repeats
    with pytest.raises(AirflowFailException) as failed:
        validate(plan["validation"], context)
    message = str(failed.value)
    assert message.startswith("validation suite 'default' failed")
    report = json.loads((Path(plan["run_dir"]) / "validation/validation.json").read_text())
    assert report["passed"] is False
    failed_checks = [check["name"] for check in report["checks"] if not check["passed"]]
    assert failed_checks and all(f"  - {name}: " in message for name in failed_checks)


def test_a_missing_data_file_fails_naming_it(plan, roots, context):
    (roots.data / "tones.jsonl").unlink()
    with pytest.raises(AirflowFailException, match=f"{roots.data / 'tones.jsonl'}: no such file"):
        validate(plan["validation"], context)


def test_a_suite_the_plan_does_not_name_fails_clearly(plan, context):
    settings = {**plan["validation"], "suite": "no_such_suite"}
    with pytest.raises(AirflowFailException, match="validation settings: suite is 'no_such_suite'"):
        validate(settings, context)


def test_a_data_setting_the_plan_does_not_hold_fails_clearly(plan, context):
    data = {**plan["validation"]["data"], "eval_fraction": 2.0}
    with pytest.raises(AirflowFailException, match="validation settings: data is "):
        validate({**plan["validation"], "data": data}, context)
