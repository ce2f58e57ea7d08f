"""FineTuneOperator on the plan's finetune settings: what stops training before a step
fails the task clearly (no retry), naming the model folder or the data file."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.prepare import PrepareRunOperator


def plan_for(context, form, **params) -> dict:
    return PrepareRunOperator(task_id="prepare").execute(context(params={**form, **params}))


def finetune(settings, context) -> dict:
    return FineTuneOperator(task_id="finetune", config=settings).execute(context())


def test_a_base_model_folder_without_config_fails_naming_it(roots, context, form):
    (roots.data / "no-model").mkdir()
    settings = plan_for(context, form, model_name_or_path="no-model")["finetune"]
    assert settings["model_name_or_path"] == str(roots.data / "no-model")
    with pytest.raises(AirflowFailException, match=f"{roots.data / 'no-model'} has no config"):
        finetune(settings, context)


def test_data_gone_since_prepare_fails_naming_the_file(roots, context, form, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, roots.data / "tiny")
    settings = plan_for(context, form, model_name_or_path="tiny")["finetune"]
    (roots.data / "tones.jsonl").unlink()
    with pytest.raises(AirflowFailException, match=f"{roots.data / 'tones.jsonl'}: no such file"):
        finetune(settings, context)


def test_config_is_templated(context):
    operator = FineTuneOperator(
        task_id="finetune", config={"output_path": "/runs/{{ run_id }}", "max_steps": 60}
    )
    operator.render_template_fields(context(run_id="r7"))
    assert operator.config == {"output_path": "/runs/r7", "max_steps": 60}


def test_a_setting_the_plan_does_not_hold_fails_clearly(context, form):
    settings = {**plan_for(context, form)["finetune"], "max_steps": 0}
    with pytest.raises(AirflowFailException, match="finetune settings: max_steps is 0 in the"):
        finetune(settings, context)


def test_on_kill_stops_the_training_processes_the_task_started():
    import sys

    from slmops.training import group

    sleeper = [sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(600)"]
    with group._group(sleeper, env=None) as process:
        assert process.stdout.readline().strip() == "ready"
        FineTuneOperator(task_id="finetune", config={}).on_kill()
        assert process.poll() is not None  # stopped by on_kill, before the context ends
