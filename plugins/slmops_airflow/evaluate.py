"""EvaluateModelOperator: base vs fine-tuned metrics and the overfitting gates."""

from __future__ import annotations

import datetime
from typing import Any

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.lineage import LineageReporting
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.ui.links import EvaluationReportLink


class EvaluateModelOperator(LineageReporting, StageOperator):
    """Score a finished fine-tuning run and judge its gates.

    ``config``: ``run_path`` (the fine-tuning run) plus any ``EvaluateConfig`` fields
    (gate thresholds...), and ``min_primary_metric``. Writes RUN_PATH/evaluation/. A
    failed gate fails the task with the gate's explanation and remedies, so nothing
    downstream (export, publish) runs.
    """

    ui_color = "#f3e8fd"
    operator_extra_links = (EvaluationReportLink(),)

    def __init__(
        self,
        *,
        config: dict | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["evaluate"],
        **kwargs: Any,
    ) -> None:
        super().__init__(config=config, execution_timeout=execution_timeout, **kwargs)

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            result = stages.evaluate(
                self.config, log=self.log.info, from_run=self.run_folder(context)
            )
        self.describe_lineage("evaluation", dict(self.config), result)
        return result
