"""Every slmops operator has a default execution_timeout (slmops_airflow.timeouts), which
a DAG overrides per task or through default_args; mapped tasks get it too."""

from __future__ import annotations

import datetime

import pytest
from airflow.sdk import DAG

from slmops_airflow.approval import ApprovePublishOperator
from slmops_airflow.champion import ChallengeChampionOperator
from slmops_airflow.data_watch import DataWatchOperator, RecordDataLookOperator
from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.multi_adapter import BuildMultiAdapterOperator, PlanAdaptersOperator
from slmops_airflow.optimize import OnnxOptimizeOperator
from slmops_airflow.prepare import PrepareRunOperator
from slmops_airflow.publish import PublishModelOperator
from slmops_airflow.report import ReportOperator
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.validate import ValidateDatasetOperator

OPERATORS = {
    "plan": lambda **kw: PrepareRunOperator(task_id="prepare", **kw),
    "validate": lambda **kw: ValidateDatasetOperator(task_id="validate", config={}, **kw),
    "finetune": lambda **kw: FineTuneOperator(task_id="finetune", config={}, **kw),
    "evaluate": lambda **kw: EvaluateModelOperator(task_id="evaluate", config={}, **kw),
    "optimize": lambda **kw: OnnxOptimizeOperator(
        task_id="optimize", config={}, target="cpu-int4", **kw
    ),
    "challenge": lambda **kw: ChallengeChampionOperator(task_id="challenge", run_dir="r", **kw),
    "approve": lambda **kw: ApprovePublishOperator(task_id="approve", run_dir="r", **kw),
    "report": lambda **kw: ReportOperator(task_id="report", run_dir="r", **kw),
    "publish": lambda **kw: PublishModelOperator(
        task_id="publish", run_dir="r", models_root="m", **kw
    ),
    "build_adapters": lambda **kw: BuildMultiAdapterOperator(task_id="build", run_dir="r", **kw),
    "data_watch": lambda **kw: DataWatchOperator(task_id="watch", data_file="d.jsonl", **kw),
    "record_data_look": lambda **kw: RecordDataLookOperator(
        task_id="record", data_file="d.jsonl", look={}, **kw
    ),
}


@pytest.mark.parametrize("stage", sorted(OPERATORS))
def test_each_operator_defaults_to_its_row_of_the_table(stage):
    """Finding: no task had an execution_timeout, so a hang held a worker slot forever."""
    assert OPERATORS[stage]().execution_timeout == STAGE_TIMEOUTS[stage]
    assert STAGE_TIMEOUTS[stage] > datetime.timedelta(0)


@pytest.mark.parametrize("stage", sorted(OPERATORS))
def test_a_dag_overrides_the_default_per_task_or_with_default_args(stage):
    ten = datetime.timedelta(minutes=10)
    assert OPERATORS[stage](execution_timeout=ten).execution_timeout == ten
    assert OPERATORS[stage](execution_timeout=None).execution_timeout is None
    with DAG(f"override_{stage}", schedule=None, default_args={"execution_timeout": ten}):
        assert OPERATORS[stage]().execution_timeout == ten


def test_a_plan_adapters_task_is_a_planning_task():
    assert PlanAdaptersOperator(task_id="plan").execution_timeout == STAGE_TIMEOUTS["plan"]


def test_mapped_tasks_get_the_default_too():
    with DAG("mapped", schedule=None):
        optimize = OnnxOptimizeOperator.partial(task_id="optimize", config={}).expand(
            target=["cpu-int4", "cpu-fp32"]
        )
        finetune = FineTuneOperator.partial(task_id="finetune").expand(config=[{}, {}])
    assert optimize.execution_timeout == STAGE_TIMEOUTS["optimize"]
    assert finetune.execution_timeout == STAGE_TIMEOUTS["finetune"]


def test_the_approval_wait_keeps_its_own_timeout():
    """The HITL wait is bounded by response_timeout (the run's approval_timeout_hours at
    run time), not by execution_timeout, which the operator keeps for its own work."""
    approve = OPERATORS["approve"]()
    assert approve.execution_timeout == STAGE_TIMEOUTS["approve"]
    assert approve.response_timeout == datetime.timedelta(hours=72)
