"""FineTuneOperator: LoRA / QLoRA / DoRA / full fine-tuning."""

from __future__ import annotations

import datetime
from typing import Any

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.lineage import LineageReporting
from slmops_airflow.timeouts import STAGE_TIMEOUTS


class FineTuneOperator(LineageReporting, StageOperator):
    """Train with ``config`` (``slmops.training.config.FinetuneConfig`` fields; its
    ``output_path`` is the run folder). A retry resumes from the last checkpoint, and a
    finished run with the same settings is reused rather than trained again. Route it to
    GPU workers with ``queue="gpu"``. With ``num_processes`` > 1 the training runs as a
    torchrun group on this worker, bounded by ``execution_timeout`` and stopped by on_kill.
    """

    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        config: dict | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["finetune"],
        **kwargs: Any,
    ) -> None:
        super().__init__(config=config, execution_timeout=execution_timeout, **kwargs)

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        timeout = self.execution_timeout.total_seconds() if self.execution_timeout else None
        with failing_clearly():
            result = stages.finetune(
                self.config, log=self.log.info, timeout=timeout, from_run=self.run_folder(context)
            )
        self.describe_lineage("finetune", dict(self.config), result)
        return result

    def on_kill(self) -> None:
        """A killed task takes its training processes (a torchrun group) with it."""
        from slmops.pipeline import stages

        stages.stop_training()
