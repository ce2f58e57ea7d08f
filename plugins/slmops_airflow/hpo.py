"""Operators of the hyperparameter search: plan the trials, run one, pick the best."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.prepare import PlanningOperator
from slmops_airflow.timeouts import STAGE_TIMEOUTS


class PlanTrialsOperator(PlanningOperator):
    """Check the run's params and search (``slmops.pipeline.hpo``) and plan every trial
    before one starts; pushes ``run_dir``, ``validation`` and ``trials`` as XComs."""

    def make_plan(self, conf: dict, **where: Any) -> dict:
        from slmops.pipeline import stages

        plan = stages.plan_trials(conf, **where)
        for trial in plan["trials"]:
            self.log.info("trial %s: %s", trial["index"], trial["params"])
        return plan


class TrialOperator(StageOperator):
    """Train and score one trial (map it over the planned trials). A refused trial is
    recorded as failed for the selection, not raised; a crashed one (out of memory, a
    killed process group) is recorded and raised, so the task is retried."""

    ui_color = "#e6f4ea"

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            return stages.run_trial(
                dict(self.config), log=self.log.info, from_run=self.run_folder(context)
            )

    def on_kill(self) -> None:
        """A killed trial takes its training processes (a torchrun group) with it."""
        from slmops.pipeline import stages

        stages.stop_training()


class SelectBestTrialOperator(BaseOperator):
    """Write the trials table and return the full run's params (the winner's settings).
    The outcomes are the trials' own trial.json files in this run's folder; ``results``
    (the trial tasks' XComs) are only compared with them, so a forged XCom cannot pick the
    winner or its params. Give the task trigger_rule all_done_min_one_success so a trial
    task that failed for good does not stop it."""

    template_fields: Sequence[str] = ("run_dir", "results")
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        run_dir: str | Any,
        results: list | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["select"],
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.run_dir = run_dir
        self.results = results

    def execute(self, context) -> dict:
        from slmops.pipeline import stages
        from slmops_airflow.roots import checked_run_dir

        with failing_clearly():
            run_dir = checked_run_dir(self.run_dir, context, "run_dir")
            return stages.select_best(run_dir, list(self.results or []), log=self.log.info)
