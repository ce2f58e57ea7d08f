"""The REST API of a real Airflow (see conftest.py, one stack for this module):
slm_finetune triggered with a conf trains a tiny model, gates, exports and publishes it as
an Asset; a conf that names a file outside the data roots fails at prepare, before any
work; an event posted on a dataset's Asset starts the DAG that retrains on it, on the
data file the event names, with its champion/challenger decision and a reviewer's
approval; an event that tries to change the model name fails that run at prepare."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from slmops.pipeline.locations import run_dir
from slmops.pipeline.publish import data_asset_uri
from slmops.testing import tiny_pipeline_params

pytestmark = pytest.mark.e2e

DAG_ID = "slm_finetune"
DATA_CHANGE = "slm_finetune_on_data_change"
DEMO_DATA = data_asset_uri("phrase_tones.jsonl")
CONF = tiny_pipeline_params("e2e-tones")
RUN_FILES = (
    "plan.json",
    "validation/validation.json",
    "finetune/training_metrics.json",
    "finetune/evaluation/evaluation.json",
    "finetune/onnx/cpu-fp32/export.json",
    "report/report.html",
)


@pytest.fixture(scope="module")
def dag(airflow):
    """slm_finetune once the dag-processor has parsed it, unpaused."""
    return airflow.ready_dag(DAG_ID)


def test_trained_gated_exported_and_published(airflow, dag):
    run = airflow.trigger_and_wait(dag, CONF)
    run_id = run["dag_run_id"]
    assert run["state"] == "success", airflow.diagnose(dag, run_id)
    states = airflow.task_instances(dag, run_id)
    assert set(states.values()) <= {"success", "skipped"}, states
    assert states["finetune_gpu"] == "skipped", states

    folder = run_dir(airflow.artifacts, dag, run_id)
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    assert not missing, f"missing in {folder}: {missing}"
    models = airflow.artifacts / "models" / "e2e-tones"
    latest = json.loads((models / "latest.json").read_text(encoding="utf-8"))
    manifest = json.loads(
        (models.parent / latest["path"] / "manifest.json").read_text(encoding="utf-8")
    )
    assert manifest["uri"] == "slmops://models/e2e-tones"
    assert "cpu-fp32" in manifest["targets"]

    events = airflow.request(
        "GET", "/api/v2/assets/events", query={"source_dag_id": dag, "source_run_id": run_id}
    )["asset_events"]
    assert "slmops://models/e2e-tones" in [event["uri"] for event in events], events


def test_the_ui_plugin_lists_the_run_and_serves_its_report_to_logged_in_users(airflow, dag):
    """The slmops pages (plugins/slmops_airflow/ui) on the real api-server, after the run
    of the first test: registered with the UI, closed to anonymous callers, the run in
    the list with its numbers, its report and the files the report links to served, and
    nothing outside the run folder."""
    plugins = airflow.request("GET", "/api/v2/plugins")["plugins"]
    (plugin,) = [entry for entry in plugins if entry["name"] == "slmops"]
    views = {view["name"]: view for view in plugin["external_views"]}
    assert (
        views["Fine-tuning"]["href"] == "/slmops/" and views["Fine-tuning"]["destination"] == "nav"
    )
    assert views["Run report"]["destination"] == "dag_run"

    status, headers, _ = airflow.page("/slmops/", logged_in=False)
    assert status == 303 and "/auth/login" in headers["location"], (status, headers)
    for path in ("/slmops/api/runs", "/slmops/static/icon.svg"):
        status, _, body = airflow.page(path, logged_in=False, accept="application/json")
        assert status == 401, (path, status, body[:300])

    (run,) = [
        row
        for row in airflow.request("GET", "/slmops/api/runs")
        if row["dag_id"] == dag and row["model_name"] == "e2e-tones"
    ]
    assert run["outcome"] == "passed" and run["published"] == {
        "version": run["published"]["version"],
        "latest": True,
    }, run
    assert "cpu-fp32" in run["targets"] and run["evaluation"]["fine_tuned"] is not None, run

    # A report's "Published" link (to the version folder) resolves to this in the UI.
    version = run["published"]["version"]
    status, headers, _ = airflow.page(f"/slmops/models/e2e-tones/versions/{version}")
    location = urllib.parse.unquote(headers["location"])
    assert status == 303 and location == f"/slmops/models#e2e-tones-{version}", headers
    status, _, models = airflow.page("/slmops/models")
    assert status == 200 and f'id="e2e-tones-{version}"'.encode() in models, models[:2000]

    status, _, listing = airflow.page("/slmops/")
    assert status == 200 and b"e2e-tones" in listing and b"cpu-fp32" in listing, listing[:2000]
    page = f"/slmops/runs/{dag}/{urllib.parse.quote(run['run_id'], safe='')}"
    status, headers, _ = airflow.page(page)
    assert status == 303 and headers["location"].endswith("/report/report.html"), headers
    status, headers, report = airflow.page(headers["location"])
    assert status == 200 and b'id="evaluation"' in report, report[:500]
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    status, headers, _ = airflow.page(f"{page}/validation/validation.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    status, _, body = airflow.page(f"{page}/..%2F..%2F..%2Fairflow%2Fairflow.db")
    assert status in (400, 404), (status, body[:300])
    assert b"SQLite" not in body

    links = airflow.request(
        "GET",
        f"/api/v2/dags/{dag}/dagRuns/{urllib.parse.quote(run['run_id'], safe='')}"
        "/taskInstances/evaluate/links",
    )
    assert links["extra_links"]["Evaluation in the run report"].endswith(
        "/report/report.html#evaluation"
    ), links


def test_an_unanswered_approval_times_out_as_a_rejection(airflow, dag):
    """require_approval with an 18 s timeout and nobody answering: the scheduler answers
    the request's default (Reject), the approve task records a timeout, the report says
    so and publish skips; the run itself succeeds (a rejection is not a failure).

    Not shorter: Airflow 3.3 resumes a task whose wait ended before the scheduler has
    handled the exit of the process that parked it, then takes that exit for a lost task
    and retries it (CI18: a 3.6 s timeout, that exit handled 5 s late on a busy machine).
    The answering tests wait 10 s for the same reason."""
    conf = {
        **CONF,
        "model_name": "e2e-unreviewed",
        "require_approval": True,
        "approval_timeout_hours": 0.005,
    }
    run = airflow.trigger_and_wait(dag, conf)
    run_id = run["dag_run_id"]
    states = airflow.task_instances(dag, run_id)
    assert run["state"] == "success", airflow.diagnose(dag, run_id)
    assert states["approve"] == states["report"] == "success", states
    assert states["publish"] == "skipped", states
    folder = run_dir(airflow.artifacts, dag, run_id)
    summary = json.loads((folder / "report" / "summary.json").read_text(encoding="utf-8"))
    assert summary["approval"]["decision"] == "timed_out", summary["approval"]
    assert "nobody approved publishing before the timeout" in airflow.task_log(
        dag, run_id, "publish"
    )
    assert not (airflow.artifacts / "models" / "e2e-unreviewed").exists()


def test_file_outside_the_data_roots_fails_at_prepare(airflow, dag):
    conf = {**CONF, "model_name": "e2e-refused", "data_files": ["/etc/passwd"]}
    run = airflow.trigger_and_wait(dag, conf)
    run_id = run["dag_run_id"]
    states = airflow.task_instances(dag, run_id)
    assert run["state"] == "failed", states
    assert states["prepare"] == "failed", states
    assert states["validate"] == states["finetune"] == "upstream_failed", states
    assert states["report"] == "skipped", states  # no run folder to report on
    log = airflow.request(
        "GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/prepare/logs/1"
    )
    assert "param data_files: /etc/passwd is outside the data roots" in json.dumps(log), log
    assert not (run_dir(airflow.artifacts, dag, run_id) / "finetune").exists()
    assert not (airflow.artifacts / "models" / "e2e-refused").exists()


def _asset_id(airflow, uri: str) -> int:
    assets = airflow.wait(
        f"the Asset {uri}",
        lambda: [
            asset
            for asset in airflow.request("GET", "/api/v2/assets")["assets"]
            if asset["uri"] == uri
        ],
        timeout=120,
    )
    return assets[0]["id"]


def _asset_triggered_run(airflow, dag_id: str) -> dict:
    def started():
        runs = airflow.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        return next((run for run in runs if run["run_type"] == "asset_triggered"), None)

    return airflow.wait(f"{dag_id} to start from the event", started, timeout=180)


def _finished(airflow, dag_id: str, run_id: str) -> dict:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    return airflow.wait(
        f"{dag_id} run {run_id} to finish",
        lambda: (lambda now: now if now["state"] in ("success", "failed") else None)(
            airflow.request("GET", path)
        ),
        timeout=600,
    )


def test_an_asset_event_starts_a_retraining_on_the_file_it_names(airflow, retrain_dag):
    airflow.ready_dag(retrain_dag)
    data = airflow.artifacts.parent / "data"
    (data / "tones-v2.jsonl").write_bytes((data / "tones.jsonl").read_bytes())
    asset = _asset_id(airflow, data_asset_uri("tones.jsonl"))
    event = airflow.request(
        "POST",
        "/api/v2/assets/events",
        {"asset_id": asset, "extra": {"params": {"data_files": ["tones-v2.jsonl"]}}},
    )
    assert event["uri"] == data_asset_uri("tones.jsonl")

    run = _asset_triggered_run(airflow, retrain_dag)
    # The DAG asks a reviewer before it replaces the champion.
    answer = airflow.answer_approval(retrain_dag, run["dag_run_id"], "Approve", "numbers hold")
    assert answer["chosen_options"] == ["Approve"], answer
    run_id = run["dag_run_id"]
    run = _finished(airflow, retrain_dag, run_id)
    assert run["state"] == "success", airflow.diagnose(retrain_dag, run_id)
    states = airflow.task_instances(retrain_dag, run_id)
    assert states["challenge"] == states["publish"] == "success", states

    folder = run_dir(airflow.artifacts, retrain_dag, run_id)
    plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    assert plan["params"]["data_files"] == ["tones-v2.jsonl"]  # the event's, not the form's
    assert plan["model_name"] == "e2e-retrained"  # the DAG's
    summary = json.loads((folder / "report" / "summary.json").read_text(encoding="utf-8"))
    assert summary["champion"]["decision"] == "promote"
    assert summary["approval"]["decision"] == "approved", summary["approval"]
    assert summary["approval"]["by"] == "admin" and summary["approval"]["reason"] == "numbers hold"
    assert "no champion" in summary["champion"]["reason"]
    assert "## Champion / challenger" in (folder / "report" / "report.md").read_text()
    assert (airflow.artifacts / "models" / "e2e-retrained" / "latest.json").is_file()


def test_an_asset_event_cannot_change_the_model_name(airflow):
    """An event may set only the DAG's event params (data files, splits): one that names
    another model fails the run at prepare, before any work, and publishes nothing."""
    airflow.ready_dag(DATA_CHANGE)
    airflow.request(
        "POST",
        "/api/v2/assets/events",
        {
            "asset_id": _asset_id(airflow, DEMO_DATA),
            "extra": {"params": {"model_name": "hijacked", "data_files": ["tones.jsonl"]}},
        },
    )
    run_id = _asset_triggered_run(airflow, DATA_CHANGE)["dag_run_id"]
    assert _finished(airflow, DATA_CHANGE, run_id)["state"] == "failed"
    states = airflow.task_instances(DATA_CHANGE, run_id)
    assert states["prepare"] == "failed", states
    assert states["validate"] == "upstream_failed", states
    assert not (airflow.artifacts / "models" / "hijacked").exists()
    assert not run_dir(airflow.artifacts, DATA_CHANGE, run_id).exists()
