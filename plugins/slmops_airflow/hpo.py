"""Operators of the hyperparameter search: plan the trials, run one, pick the best."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.prepare import ARTIFACTS_VARIABLE, DATA_ROOTS_VARIABLE


class PlanTrialsOperator(BaseOperator):
    """Check the run's params and search (``slmops.pipeline.hpo``) and plan every trial
    before one starts; pushes ``run_dir``, ``validation`` and ``trials`` as XComs."""

    ui_color = "#e8f0fe"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)

    def execute(self, context) -> dict:
        from airflow.sdk import Variable

        from slmops.pipeline import locations
        from slmops.pipeline.hpo import plan_trials

        with failing_clearly():
            plan = plan_trials(
                dict(context["params"]),
                dag_id=context["dag"].dag_id,
                run_id=context["run_id"],
                artifacts_root=locations.artifacts_root(
                    Variable.get(ARTIFACTS_VARIABLE, default=None)
                ),
                data_roots=locations.data_roots(Variable.get(DATA_ROOTS_VARIABLE, default=None)),
            )
        for trial in plan["trials"]:
            self.log.info("trial %s: %s", trial["index"], trial["params"])
        return plan


class TrialOperator(StageOperator):
    """Train and score one trial (map it over the planned trials); a trial that fails
    is recorded as failed for the selection, not raised."""

    ui_color = "#e6f4ea"

    def execute(self, context) -> dict:
        from slmops.pipeline.hpo import run_trial

        with failing_clearly():
            return run_trial(dict(self.config), log=self.log.info)


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

        from slmops.pipeline.hpo import select_best

        with failing_clearly():
            return select_best(Path(self.run_dir), list(self.results), log=self.log.info)
