"""OnnxOptimizeOperator: the target and the config templated; a target or a setting the
run's plan does not hold, or an unfinished run, fails clearly."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.optimize import OnnxOptimizeOperator
from slmops_airflow.prepare import PrepareRunOperator


@pytest.fixture
def settings(context, form) -> dict:
    return PrepareRunOperator(task_id="prepare").execute(context(params=form))["optimize"]


def optimize(settings, target, context) -> dict:
    return OnnxOptimizeOperator(task_id="optimize", config=settings, target=target).execute(
        context()
    )


def test_an_unfinished_training_run_fails_naming_it(settings, context):
    with pytest.raises(AirflowFailException, match="no training_metrics.json"):
        optimize(settings, "cpu-int4", context)


@pytest.mark.parametrize("target", ["tpu-int2", "cpu-fp32"])
def test_a_target_the_run_did_not_plan_fails_listing_the_planned_ones(settings, context, target):
    with pytest.raises(AirflowFailException) as failed:
        optimize(settings, target, context)
    assert str(failed.value).startswith(
        f"optimize: target {target!r} is not one of this run's planned targets (cpu-int4)"
    )


def test_an_unknown_setting_fails_naming_it(settings, context):
    with pytest.raises(AirflowFailException, match="optimize settings: colour is 'red' in"):
        optimize({**settings, "colour": "red"}, "cpu-int4", context)


def test_target_and_config_are_templated(context):
    operator = OnnxOptimizeOperator(
        task_id="optimize",
        target="{{ params.target }}",
        config={"run_path": "{{ params.run }}", "benchmark": False},
    )
    assert tuple(operator.template_fields) == ("target", "config")
    operator.render_template_fields(context(params={"target": "cpu-int8", "run": "/r/finetune"}))
    assert operator.target == "cpu-int8"
    assert operator.config == {"run_path": "/r/finetune", "benchmark": False}
