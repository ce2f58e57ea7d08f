"""The fine-tuning pipeline's task graph, added to whichever DAG is being defined.

slm_finetune, slm_finetune_on_data_change, slm_hpo and the config-driven DAGs share it:

    prepare -> validate -> route_training -> finetune | finetune_gpu -> evaluate
      -> optimize[cpu targets] + optimize_gpu[gpu targets] -> (challenge) -> approve
      -> report -> publish

approve asks a reviewer only when the run's params say require_approval (else it skips).
Every task has an execution_timeout: the stage operators their row of
``slmops_airflow.timeouts.STAGE_TIMEOUTS``, the small Python tasks SMALL_TASK_TIMEOUT.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pendulum
from airflow.sdk import BaseOperator, CronTriggerTimetable, task

from slmops.pipeline.params import EVENT_PARAMS
from slmops_airflow.alerts import task_failure_alert
from slmops_airflow.approval import ApprovePublishOperator
from slmops_airflow.champion import ChallengeChampionOperator
from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.optimize import OnnxOptimizeOperator
from slmops_airflow.prepare import PrepareRunOperator
from slmops_airflow.publish import PublishModelOperator
from slmops_airflow.report import ReportOperator
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.validate import ValidateDatasetOperator

# A task that fails for good (a gate, a parity check, an error after its retries) alerts.
DEFAULT_ARGS = {
    "retries": 1,
    "retry_delay": pendulum.duration(seconds=30),
    "on_failure_callback": task_failure_alert,
}
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
# Ceilings, not estimates (slmops_airflow.timeouts): a hung task frees its worker slot.
FINETUNE_TIMEOUT = STAGE_TIMEOUTS["finetune"]
SMALL_TASK_TIMEOUT = STAGE_TIMEOUTS["small"]


def cron_timetable(expression: str) -> CronTriggerTimetable:
    """A UTC cron schedule whose first run is the next slot. Airflow 3.3 treats the default
    ``run_immediately=False`` like None (it runs the slot that passed less than a tenth of
    the period ago: a weekly DAG unpaused on a Monday afternoon would retrain at once), so
    say "never" as a zero window."""
    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=datetime.timedelta(0))


@dataclass
class PipelineTasks:
    prepare: BaseOperator
    report: BaseOperator
    publish: BaseOperator


def finetune_pipeline(
    *,
    conf: Any = None,
    challenge: bool = False,
    event_params: Sequence[str] = EVENT_PARAMS,
) -> PipelineTasks:
    """Add the stages to the current DAG. ``conf`` replaces the run's params (an XCom of
    an upstream task, e.g. HPO's best settings); ``challenge`` adds the champion/challenger
    step, so publish replaces the published model only when this run beats it;
    ``event_params`` are the params an Asset event that starts a run may set."""
    plan = PrepareRunOperator(task_id="prepare", conf=conf, event_params=event_params)
    validate = ValidateDatasetOperator(task_id="validate", config=plan.output["validation"])

    @task.branch(execution_timeout=SMALL_TASK_TIMEOUT)
    def route_training(train_on_gpu: bool) -> str:
        return "finetune_gpu" if train_on_gpu else "finetune"

    @task(execution_timeout=SMALL_TASK_TIMEOUT)
    def targets(names: list[str]) -> list[str]:
        """The targets to map over: Airflow maps only over a task's return value."""
        return names

    route = route_training(plan.output["train_on_gpu"])
    finetune = FineTuneOperator(task_id="finetune", config=plan.output["finetune"])
    finetune_gpu = FineTuneOperator(
        task_id="finetune_gpu", config=plan.output["finetune"], queue="gpu"
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        config=plan.output["evaluate"],
        trigger_rule="none_failed_min_one_success",  # one of the two trainings ran
    )
    optimize = OnnxOptimizeOperator.partial(
        task_id="optimize", config=plan.output["optimize"]
    ).expand(target=targets.override(task_id="cpu_targets")(plan.output["cpu_targets"]))
    optimize_gpu = OnnxOptimizeOperator.partial(
        task_id="optimize_gpu", config=plan.output["optimize"], queue="gpu"
    ).expand(target=targets.override(task_id="gpu_targets")(plan.output["gpu_targets"]))
    report = ReportOperator(
        task_id="report", run_dir=plan.output["run_dir"], trigger_rule="all_done"
    )
    publish = PublishModelOperator(
        task_id="publish",
        run_dir=plan.output["run_dir"],
        models_root=plan.output["models_root"],
        trigger_rule="none_failed_min_one_success",  # an empty target list is skipped
    )

    validate >> route >> [finetune, finetune_gpu] >> evaluate >> [optimize, optimize_gpu]
    exported = [optimize, optimize_gpu]
    if challenge:
        champion = ChallengeChampionOperator(
            task_id="challenge",
            run_dir=plan.output["run_dir"],
            trigger_rule="none_failed_min_one_success",
        )
        exported >> champion
        exported = [*exported, champion]
    approve = ApprovePublishOperator(
        task_id="approve",
        run_dir=plan.output["run_dir"],
        trigger_rule="none_failed_min_one_success",
    )
    exported >> approve
    [*exported, approve] >> report
    [*exported, approve, report] >> publish
    return PipelineTasks(plan, report, publish)
