"""What every slmops operator shares: clear failures without retries, and ``config`` as one
templated dict rendered by Airflow's own Jinja rendering."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from slmops.errors import ConfigError, GateFailure, SlmopsError
from slmops_airflow._stage import StageOperator, failing_clearly


@pytest.mark.parametrize("error", [ConfigError("param lora_r: must be >= 1"), SlmopsError("x")])
def test_an_slmops_error_fails_the_task_without_retry_with_its_message(error):
    with pytest.raises(AirflowFailException) as failed, failing_clearly():
        raise error
    # AirflowFailException is the one the task runner does not retry.
    assert str(failed.value) == str(error)
    assert failed.value.__cause__ is error


def test_a_gate_failure_keeps_its_explanation_and_remedies():
    from slmops.evaluation.gates import GateRecord

    record = GateRecord(
        name="loss_gap",
        observed=1.4,
        threshold=0.5,
        passed=False,
        explanation="eval loss 2.1 is 1.4 above train loss 0.7",
        remedies=("lower max_steps",),
    )
    with pytest.raises(AirflowFailException) as failed, failing_clearly():
        raise GateFailure([record])
    message = str(failed.value)
    assert message.splitlines()[0] == "1 gate failed:"
    assert "- loss_gap: eval loss 2.1 is 1.4 above train loss 0.7" in message
    assert "  * lower max_steps" in message


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyError("run_dir")])
def test_other_errors_propagate_unchanged_so_airflow_retries_them(error):
    with pytest.raises(type(error)) as raised, failing_clearly():
        raise error
    assert raised.value is error
    assert not isinstance(raised.value, AirflowException)


def test_nothing_raised_passes_the_value_through():
    with failing_clearly():
        value = 41 + 1
    assert value == 42


def test_config_is_the_one_template_field_and_renders_nested_strings():
    from airflow.sdk import DAG

    operator = StageOperator(
        task_id="stage",
        config={
            "data": {"data_files": ["{{ params.data_file }}"], "eval_fraction": 0.25},
            "output_path": "/runs/{{ dag.dag_id }}/{{ run_id }}",
            "max_steps": 60,
        },
    )
    assert tuple(StageOperator.template_fields) == ("config",)
    operator.render_template_fields(
        {
            "params": {"data_file": "tones.jsonl"},
            "run_id": "r1",
            "dag": DAG("slm_finetune", schedule=None),
        }
    )
    assert operator.config == {
        "data": {"data_files": ["tones.jsonl"], "eval_fraction": 0.25},
        "output_path": "/runs/slm_finetune/r1",
        "max_steps": 60,
    }


def test_a_dag_rendering_native_objects_keeps_their_types():
    from airflow.sdk import DAG

    with DAG("native", schedule=None, render_template_as_native_obj=True):
        operator = StageOperator(
            task_id="stage",
            config={"max_steps": "{{ params.steps }}", "targets": "{{ params.targets }}"},
        )
    operator.render_template_fields(
        {"params": {"steps": 60, "targets": ["cpu-fp32", "cpu-int4"]}, "run_id": "r1"}
    )
    assert operator.config == {"max_steps": 60, "targets": ["cpu-fp32", "cpu-int4"]}


def test_the_constructor_only_stores_its_arguments():
    config = {"run_path": "/nowhere/at/all"}
    operator = StageOperator(task_id="stage", config=config)
    assert operator.config is config  # nothing checked or read until execute()
