"""A pipeline run in the embedded MLflow store: the run, its stages, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tracked_runs import client_for, clone_run, closed_port, run_dir

from slmops.pipeline import stages


def _children(client, parent: str) -> dict:
    found = client.search_runs(["1"], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {run.data.tags["slmops.stage"]: run for run in found}


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    return {entry.path for entry in client.list_artifacts(run_id, path)}


def test_a_pipeline_run_is_one_mlflow_run_with_a_nested_run_per_stage(tracked_root):
    client = client_for(tracked_root)
    status = json.loads((run_dir(tracked_root) / "tracking.json").read_text())
    assert status["enabled"] and status["uri"].endswith("/mlflow/mlflow.db")
    parent = client.get_run(status["run_id"])
    tags, params = parent.data.tags, parent.data.params
    assert tags["slmops.dag_id"] == "slm_finetune" and tags["slmops.run_id"] == "manual__1"
    assert tags["slmops.model_name"] == "tiny-tones" and tags["slmops.outcome"] == "PASS"
    assert params["max_steps"] == "60" and params["method"] == "full"  # the form's params
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["fine_tuned.accuracy"] > parent.data.metrics["base.accuracy"]
    assert _artifacts(client, parent.info.run_id, "report") == {
        "report/report.html", "report/report.md", "report/summary.json"
    }  # fmt: skip

    children = _children(client, parent.info.run_id)
    assert set(children) == {
        "validation",
        "finetune",
        "evaluation",
        "optimize[cpu-fp32]",
        "publish",
    }
    assert status["stages"] == {
        name: run.info.run_id for name, run in children.items() if name != "publish"
    }

    finetune = children["finetune"]
    assert finetune.data.params["learning_rate"] == "0.01"  # every hyperparameter
    assert finetune.data.params["per_device_train_batch_size"] == "4"
    losses = client.get_metric_history(finetune.info.run_id, "loss")
    assert [point.step for point in losses] == [10, 20, 30, 40, 50, 60]
    assert losses[-1].value < losses[0].value
    assert [p.step for p in client.get_metric_history(finetune.info.run_id, "eval_loss")] == [
        20, 40, 60
    ]  # fmt: skip
    assert finetune.data.metrics["tokens_per_second"] > 0
    assert finetune.data.metrics["peak_memory_mb.rss"] > 0

    evaluation = children["evaluation"]
    metrics = evaluation.data.metrics
    assert metrics["fine_tuned.accuracy"] == parent.data.metrics["fine_tuned.accuracy"]
    assert metrics["gate.loss_gap.threshold"] == 2.0
    assert metrics["gate.loss_gap.observed"] < 2.0 and metrics["gate.loss_gap.passed"] == 1.0
    assert evaluation.data.tags["gate.loss_gap"].startswith("PASS: final eval loss")
    files = _artifacts(client, evaluation.info.run_id)
    assert {"predictions.json", "confusion_fine_tuned.png", "loss_curves.png"} <= files
    downloaded = client.download_artifacts(evaluation.info.run_id, "predictions.json")
    table = json.loads(Path(downloaded).read_text())
    assert "fine_tuned_answer" in table["columns"] and len(table["data"]) == 24

    target = children["optimize[cpu-fp32]"].data
    assert target.params["target"] == "cpu-fp32"
    assert target.metrics["size_mb"] > 0 and target.metrics["agreement.identical_answers"] == 1.0
    assert target.metrics["gate.max_export_degradation_cpu-fp32.passed"] == 1.0

    assert children["validation"].data.metrics["checks_failed"] == 0
    inputs = parent.inputs.dataset_inputs
    assert [entry.dataset.name for entry in inputs] == ["tones.jsonl"]
    fingerprint = parent.data.tags["slmops.dataset_fingerprint"]
    assert inputs[0].dataset.digest == fingerprint[:36]
    assert json.loads(inputs[0].dataset.profile)["validation"] == "PASS"

    report = (run_dir(tracked_root) / "report" / "report.html").read_text()
    assert f"run {parent.info.run_id} with a nested run per stage" in report


def test_writing_the_report_again_replaces_the_stage_runs(tracked_root, tracking_on):
    client = client_for(tracked_root)
    run = clone_run(tracked_root, "manual__again")
    first = stages.report(run)["tracking"]
    second = stages.report(run)["tracking"]
    assert second["run_id"] == first["run_id"]
    assert set(second["stages"]) == set(first["stages"])
    assert not set(second["stages"].values()) & set(first["stages"].values())
    assert set(_children(client, second["run_id"])) == set(second["stages"])


def test_an_unreachable_tracking_server_is_a_warning_and_the_report_says_so(
    tracked_root, tracking_on, tmp_path
):
    run = clone_run(tracked_root, "manual__offline", into=tmp_path / "artifacts")
    uri = f"http://127.0.0.1:{closed_port()}"
    lines: list[str] = []
    summary = stages.report(run, tracking_uri=uri, log=lines.append)
    assert summary["passed"]
    assert summary["tracking"]["enabled"] is False and summary["tracking"]["uri"] == uri
    assert any(line.startswith(f"WARNING tracking: MLflow at {uri}") for line in lines)
    report = (run / "report" / "report.md").read_text()
    assert f"Tracking was off for this run: {uri}/health did not answer" in report
    manifest = stages.publish(run, tmp_path / "artifacts" / "models", tracking_uri=uri)
    assert manifest["registry"] is None  # published in the store all the same
    assert (tmp_path / "artifacts" / "models" / "tiny-tones" / "latest.json").is_file()


def test_tracking_turned_off_says_so(tracked_root, monkeypatch, tmp_path):
    monkeypatch.setenv("SLMOPS_TRACKING", "off")
    run = clone_run(tracked_root, "manual__off", into=tmp_path / "artifacts")
    summary = stages.report(run)
    assert summary["tracking"] == {
        "enabled": False,
        "uri": f"sqlite:///{tmp_path / 'artifacts' / 'mlflow' / 'mlflow.db'}",
        "reason": "tracking is turned off ($SLMOPS_TRACKING)",
    }
    assert not (tmp_path / "artifacts" / "mlflow").exists()


@pytest.mark.parametrize(
    ("host", "port", "schema", "uri"),
    [
        ("mlflow", 5000, None, "http://mlflow:5000"),
        ("https://mlflow.example.org/", None, None, "https://mlflow.example.org"),
        ("mlflow.internal", 443, "https", "https://mlflow.internal:443"),
        (None, 5000, None, None),
    ],
)
def test_an_airflow_connection_becomes_a_tracking_uri(host, port, schema, uri):
    from slmops_airflow.tracking import connection_uri

    assert connection_uri(host, port, schema) == uri


def test_a_whole_run_with_an_unreachable_tracking_server_completes_and_publishes(
    tiny_model_dir, tracking_on, monkeypatch, tmp_path
):
    """`slmops run` with $MLFLOW_TRACKING_URI on a port nobody listens on: the pipeline
    trains, reports and publishes; the report says tracking was off."""
    from slmops.pipeline.local_run import RunConfig, run_pipeline
    from slmops.testing import tiny_pipeline_data, tiny_pipeline_params

    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = tiny_pipeline_data(tmp_path / "data", tiny_model_dir)
    params = tiny_pipeline_params("offline-tones")
    lines: list[str] = []
    summary = run_pipeline(
        RunConfig(tmp_path, "pipeline", "slm_finetune", params),
        artifacts_root=tmp_path / "artifacts",
        data_roots=[data],
        run_id="offline__1",
        log=lines.append,
    )
    assert summary["published"] and summary["tracking"]["enabled"] is False
    warnings = [line for line in lines if line.startswith("WARNING tracking")]
    assert len(warnings) == 2, warnings  # the report, then publish: one line each
    report = (tmp_path / "artifacts/runs/slm_finetune/offline__1/report/report.html").read_text()
    assert f"Tracking was off for this run: {uri}/health did not answer" in report
    assert not (tmp_path / "artifacts" / "mlflow").exists()


def test_the_key_numbers_say_where_the_run_is_tracked(tracked_root, tmp_path, monkeypatch):
    status = json.loads((run_dir(tracked_root) / "tracking.json").read_text())
    lines = stages.key_numbers(stages.summarize(run_dir(tracked_root)))
    assert lines[-1] == f"tracked: MLflow run {status['run_id']} at {status['uri']}"
    monkeypatch.setenv("SLMOPS_TRACKING", "off")
    off = clone_run(tracked_root, "manual__keys", into=tmp_path / "artifacts")
    assert stages.key_numbers(stages.report(off))[-1] == (
        "not tracked: tracking is turned off ($SLMOPS_TRACKING)"
    )
