"""An event on the demo dataset's Asset, posted to the REST API of a real Airflow (see
conftest.py), starts slm_finetune_on_data_change; the run trains on the params the
event carries and its report holds the champion/challenger decision."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from slmops.pipeline.locations import run_dir
from slmops.pipeline.publish import data_asset_uri
from slmops.testing import tiny_pipeline_params

pytestmark = pytest.mark.e2e

DAG_ID = "slm_finetune_on_data_change"
DEMO_DATA = data_asset_uri("phrase_tones.jsonl")


def test_asset_event_starts_the_data_change_dag(airflow):
    airflow.ready_dag(DAG_ID)
    assets = airflow.wait(
        f"the Asset {DEMO_DATA}",
        lambda: [
            asset
            for asset in airflow.request("GET", "/api/v2/assets")["assets"]
            if asset["uri"] == DEMO_DATA
        ],
        timeout=120,
    )
    params = tiny_pipeline_params("e2e-retrained")
    event = airflow.request(
        "POST",
        "/api/v2/assets/events",
        {"asset_id": assets[0]["id"], "extra": {"params": params}},
    )
    assert event["uri"] == DEMO_DATA

    def asset_triggered_run():
        runs = airflow.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
        started = [run for run in runs if run["run_type"] == "asset_triggered"]
        return started[0] if started else None

    run = airflow.wait(f"{DAG_ID} to start from the event", asset_triggered_run, timeout=180)
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
    run = airflow.wait(
        f"{DAG_ID} run {run['dag_run_id']} to finish",
        lambda: (lambda now: now if now["state"] in ("success", "failed") else None)(
            airflow.request("GET", path)
        ),
        timeout=600,
    )
    run_id = run["dag_run_id"]
    assert run["state"] == "success", airflow.diagnose(DAG_ID, run_id)
    states = airflow.task_instances(DAG_ID, run_id)
    assert states["challenge"] == states["publish"] == "success", states

    folder = run_dir(airflow.artifacts, DAG_ID, run_id)
    plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    assert plan["model_name"] == "e2e-retrained"  # the event's params, not the form's
    summary = json.loads((folder / "report" / "summary.json").read_text(encoding="utf-8"))
    assert summary["champion"]["decision"] == "promote"
    assert "no champion" in summary["champion"]["reason"]
    assert "## Champion / challenger" in (folder / "report" / "report.md").read_text()
    assert (airflow.artifacts / "models" / "e2e-retrained" / "latest.json").is_file()
