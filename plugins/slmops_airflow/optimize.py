"""OnnxOptimizeOperator: export one target, check parity, time it against PyTorch."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.lineage import LineageReporting
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.ui.links import TargetsReportLink


class OnnxOptimizeOperator(LineageReporting, StageOperator):
    """Optimize a run for ``target`` (``slmops targets`` lists them); map it over a list
    of targets with ``.partial(config=...).expand(target=[...])``.

    ``config``: ``slmops.export.config.AutoOptConfig`` fields, usually ``run_path``,
    ``max_export_degradation`` and ``benchmark``. Writes RUN_PATH/onnx/TARGET/. A parity
    gate that fails fails the task with the numbers.
    """

    template_fields: Sequence[str] = ("target", "config")
    ui_color = "#e0f7fa"
    operator_extra_links = (TargetsReportLink(),)

    def __init__(
        self,
        *,
        target: str,
        config: dict | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["optimize"],
        **kwargs: Any,
    ) -> None:
        super().__init__(config=config, execution_timeout=execution_timeout, **kwargs)
        self.target = target

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            result = stages.optimize(
                self.config, self.target, log=self.log.info, from_run=self.run_folder(context)
            )
        self.describe_lineage("optimize", dict(self.config), result)
        return result
