"""slm_finetune triggered over the REST API of a real Airflow (see conftest.py): a tiny
model trains, passes its gates, is exported to ONNX and published as an Asset; a conf that
names a file outside the data roots fails at prepare, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmops.pipeline.locations import run_dir
from slmops.testing import tiny_pipeline_params

pytestmark = pytest.mark.e2e

DAG_ID = "slm_finetune"
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
    manifest = json.loads((Path(latest["path"]) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["uri"] == "slmops://models/e2e-tones"
    assert "cpu-fp32" in manifest["targets"]

    events = airflow.request(
        "GET", "/api/v2/assets/events", query={"source_dag_id": dag, "source_run_id": run_id}
    )["asset_events"]
    assert "slmops://models/e2e-tones" in [event["uri"] for event in events], events


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
