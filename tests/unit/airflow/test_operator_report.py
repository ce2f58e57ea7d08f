"""ReportOperator: a report of whatever the run folder holds; no folder, no report."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from slmops_airflow.report import ReportOperator


@pytest.mark.parametrize("run_dir", [None, ""])
def test_a_run_refused_before_it_had_a_folder_skips(roots, context, run_dir):
    with pytest.raises(AirflowSkipException, match="no run folder"):
        ReportOperator(task_id="report", run_dir=run_dir).execute(context())
    assert not roots.artifacts.exists()


def test_a_finished_run_is_reported_in_its_report_folder(finished_run, context):
    run = finished_run()
    result = ReportOperator(task_id="report", run_dir=str(run)).execute(context())
    assert result == {"report": str(run / "report/report.html"), "passed": True}
    summary = json.loads((run / "report/summary.json").read_text())
    assert summary["stages"] == {
        "validation": "PASS",
        "finetune": "PASS",
        "evaluation": "PASS",
        "optimize[cpu-int4]": "PASS",
    }
    assert (summary["evaluation"]["base"], summary["evaluation"]["fine_tuned"]) == (0.05, 0.98)
    markdown = (run / "report/report.md").read_text()
    assert "| cpu-int4 | PASS | 84.5 | 0.97 | 170 | 6.1 |" in markdown
    assert (run / "report/report.html").read_text().startswith("<!DOCTYPE html>")


def test_a_run_stopped_at_a_gate_is_reported_not_failed(finished_run, context):
    run = finished_run(passed=False)
    result = ReportOperator(task_id="report", run_dir=str(run)).execute(context())
    assert result["passed"] is False
    summary = json.loads((run / "report/summary.json").read_text())
    assert summary["stages"]["evaluation"] == "FAIL"
    assert summary["stages"]["optimize[cpu-int4]"] == "no result"
    assert "min_metric[accuracy]" in (run / "report/report.md").read_text()


def test_output_dir_and_run_dir_are_templated(finished_run, context, tmp_path):
    run = finished_run(run_id="r1")
    operator = ReportOperator(
        task_id="report", run_dir="{{ params.run }}", output_dir="{{ params.out }}/{{ run_id }}"
    )
    assert tuple(operator.template_fields) == ("run_dir", "output_dir")
    ctx = context(params={"run": str(run), "out": str(tmp_path / "elsewhere")}, run_id="r1")
    operator.render_template_fields(ctx)
    result = operator.execute(ctx)
    assert result["report"] == str(tmp_path / "elsewhere/r1/report.html")
    assert sorted(p.name for p in (tmp_path / "elsewhere/r1").iterdir()) == [
        "report.html",
        "report.md",
        "summary.json",
    ]
    assert not (run / "report").exists()


def test_writing_the_report_again_replaces_it_whole(finished_run, context):
    run = finished_run()
    ReportOperator(task_id="report", run_dir=str(run)).execute(context())
    (run / "report/stale.txt").write_text("from an earlier attempt")
    ReportOperator(task_id="report", run_dir=str(run)).execute(context())
    assert sorted(p.name for p in (run / "report").iterdir()) == [
        "report.html",
        "report.md",
        "summary.json",
    ]


def test_a_folder_without_a_plan_fails_clearly(roots, context, run_id):
    from slmops.pipeline import locations

    folder = locations.run_dir(roots.artifacts, "slm_finetune", run_id)
    folder.mkdir(parents=True)
    with pytest.raises(AirflowFailException, match="no plan; the prepare task writes it first"):
        ReportOperator(task_id="report", run_dir=str(folder)).execute(context())
    assert list(folder.iterdir()) == []
