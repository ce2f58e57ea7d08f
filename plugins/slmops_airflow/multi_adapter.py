"""Operators of the multi-adapter DAG: plan the adapters, build the shared ONNX base."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import OneTaskProcess, failing_clearly
from slmops_airflow.prepare import PlanningOperator
from slmops_airflow.timeouts import STAGE_TIMEOUTS


class PlanAdaptersOperator(PlanningOperator):
    """Check the run's params and each adapter's data (``slmops.pipeline.multi_adapter``)
    and plan every adapter before one trains; pushes ``run_dir`` and the per-stage lists
    ``validation``, ``finetune`` and ``evaluate`` (one entry per adapter) as XComs."""

    def make_plan(self, conf: dict, **where: Any) -> dict:
        from slmops.pipeline import stages

        plan = stages.plan_adapters(conf, **where)
        for adapter in plan["adapters"]:
            self.log.info("adapter %s: %s", adapter["name"], adapter["data_files"])
        return plan


class BuildMultiAdapterOperator(OneTaskProcess, BaseOperator):
    """Export the shared base with every trained adapter (one ``.onnx_adapter`` each) and
    score each adapter through it on its own eval rows. ``run_dir`` must be this run's
    folder."""

    template_fields: Sequence[str] = ("run_dir",)
    ui_color = "#e0f7fa"

    def __init__(
        self,
        *,
        run_dir: str | Any,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["build_adapters"],
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.run_dir = run_dir

    def execute(self, context) -> dict:
        from slmops.pipeline import stages
        from slmops_airflow.roots import checked_run_dir

        with failing_clearly():
            run_dir = checked_run_dir(self.run_dir, context, "run_dir")
            record = stages.build_adapters(run_dir, log=self.log.info)
        return {
            "path": record["path"],
            "size_mb": record["size_mb"],
            "adapters": {name: entry["metric"] for name, entry in record["adapters"].items()},
        }
