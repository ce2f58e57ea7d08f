"""Addresses of the slmops pages, and the task buttons (operator extra links) that open them.

Light on purpose: operators import it, so it pulls in neither FastAPI nor the app.
"""

from __future__ import annotations

from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

PREFIX = "/slmops"  # where the api-server mounts the slmops app


def run_path(dag_id: str, run_id: str) -> str:
    """The run's page, relative to the api-server's root."""
    return f"{PREFIX}/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def run_url(dag_id: str, run_id: str, section: str = "") -> str:
    """The run's page (absolute when [api] base_url is set); with ``section``, that part
    of its report (report.html#SECTION)."""
    from airflow.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    url = base + run_path(dag_id, run_id)
    return f"{url}/report/report.html#{section}" if section else url


class _ReportSectionLink(BaseOperatorLink):
    """A button on a task instance that opens its run's report at ``section``. The worker
    computes the address when the task ends and keeps it as an XCom (Airflow 3)."""

    section = ""

    def get_link(self, operator, *, ti_key) -> str:
        return run_url(ti_key.dag_id, ti_key.run_id, self.section)


class EvaluationReportLink(_ReportSectionLink):
    name = "Evaluation in the run report"
    section = "evaluation"


class TargetsReportLink(_ReportSectionLink):
    name = "ONNX targets in the run report"
    section = "targets"


class RunReportLink(_ReportSectionLink):
    name = "Run report"
    section = "stages"


class PublishReportLink(_ReportSectionLink):
    name = "Approval and champion in the run report"
    section = "approval"
