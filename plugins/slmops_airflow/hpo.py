"""Operators of the hyperparameter search: plan the trials, run one, pick the best."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.prepare import PlanningOperator


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
    """Train and score one trial (map it over the planned trials); a trial that fails
    is recorded as failed for the selection, not raised."""

    ui_color = "#e6f4ea"

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            return stages.run_trial(dict(self.config), log=self.log.info)

    def on_kill(self) -> None:
        """A killed trial takes its training processes (a torchrun group) with it."""
        from slmops.pipeline import stages

        stages.stop_training()


class SelectBestTrialOperator(BaseOperator):
    """Write the trials table and return the full run's params (the winner's settings)."""

    template_fields: Sequence[str] = ("run_dir", "results")
    ui_color = "#fef7e0"

    def __init__(self, *, run_dir: str | Any, results: list | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir
        self.results = results

    def execute(self, context) -> dict:
        from pathlib import Path

        from slmops.pipeline import stages

        with failing_clearly():
            return stages.select_best(Path(self.run_dir), list(self.results), log=self.log.info)
