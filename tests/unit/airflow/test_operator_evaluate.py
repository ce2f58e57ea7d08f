"""EvaluateModelOperator: a run folder that training has not finished fails clearly."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.prepare import PrepareRunOperator


def test_an_unfinished_training_run_fails_naming_it(roots, context, form):
    plan = PrepareRunOperator(task_id="prepare").execute(context(params=form))
    settings = plan["evaluate"]
    operator = EvaluateModelOperator(task_id="evaluate", config=settings)
    with pytest.raises(AirflowFailException) as failed:
        operator.execute(context())
    assert str(failed.value).startswith(
        f"run_path {settings['run_path']}: no training_metrics.json, so this is not a "
        "finished `slmops finetune` run"
    )


def test_config_is_templated(context):
    operator = EvaluateModelOperator(
        task_id="evaluate",
        config={"run_path": "{{ params.run }}/finetune", "min_primary_metric": 0.5},
    )
    operator.render_template_fields(context(params={"run": "/runs/r1"}))
    assert operator.config == {"run_path": "/runs/r1/finetune", "min_primary_metric": 0.5}
