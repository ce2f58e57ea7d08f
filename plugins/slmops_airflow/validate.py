"""ValidateDatasetOperator: Great Expectations checks of the training data."""

from __future__ import annotations

import datetime
from typing import Any

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.lineage import LineageReporting
from slmops_airflow.timeouts import STAGE_TIMEOUTS


class ValidateDatasetOperator(LineageReporting, StageOperator):
    """Run a validation suite over the data exactly as training will format it.

    ``config``: ``data`` (``slmops.config.DataConfig`` fields), ``suite`` (a shipped
    suite name or a YAML path), ``model_name_or_path`` (whose tokenizer counts tokens),
    ``max_seq_len`` (replaces the suite's budget) and ``output_path`` (folder for
    validation.json), checked against the run's plan. A failed check fails the task,
    naming the check and its rows.
    """

    ui_color = "#fff4e5"

    def __init__(
        self,
        *,
        config: dict | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["validate"],
        **kwargs: Any,
    ) -> None:
        super().__init__(config=config, execution_timeout=execution_timeout, **kwargs)

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            result = stages.validate(
                self.config, log=self.log.info, from_run=self.run_folder(context)
            )
        self.describe_lineage("validation", dict(self.config), result)
        return result
