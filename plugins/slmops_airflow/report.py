"""ReportOperator: one report of the whole run, whatever stage it reached."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from slmops_airflow._stage import failing_clearly
from slmops_airflow.timeouts import STAGE_TIMEOUTS
from slmops_airflow.ui.links import RunReportLink


class ReportOperator(BaseOperator):
    """Write report.md, report.html and summary.json for the run folder ``run_dir``
    into ``output_dir`` (default RUN_DIR/report). Give it ``trigger_rule="all_done"`` to
    explain failed runs too: stages without output say "no result". ``run_dir`` must be
    this run's folder (or lie inside it)."""

    template_fields: Sequence[str] = ("run_dir", "output_dir")
    ui_color = "#fce8e6"
    operator_extra_links = (RunReportLink(),)

    def __init__(
        self,
        *,
        run_dir: str | Any,
        output_dir: str | None = None,
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["report"],
        **kwargs,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.run_dir = run_dir
        self.output_dir = output_dir

    def execute(self, context) -> dict:
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowSkipException

        from slmops.layout import RunLayout
        from slmops.pipeline import stages
        from slmops_airflow.roots import checked_run_dir
        from slmops_airflow.tracking import tracking_uri

        if not self.run_dir:  # the run was refused before it had a folder
            raise AirflowSkipException("no run folder: the run stopped before prepare wrote one")

        with failing_clearly():
            run_dir = checked_run_dir(self.run_dir, context, "run_dir")
            output_dir = Path(self.output_dir or RunLayout(run_dir).report)
            summary = stages.report(
                run_dir, output_dir, tracking_uri=tracking_uri(), log=self.log.info
            )
        report = RunLayout.report_html_in(output_dir)
        self.log.info("report: %s", report)
        for stage, state in summary["stages"].items():
            self.log.info("%-22s %s", stage, state)
        tracking = summary.get("tracking") or {}
        if tracking.get("enabled"):
            self.log.info("tracked: MLflow run %s at %s", tracking["run_id"], tracking["uri"])
        return {"report": str(report), "passed": summary["passed"]}
