"""`dag.test()` runs of slm_finetune on the tiny model: a run that publishes, a cleared
rerun that redoes nothing, and a run whose gate fails and stops there."""

from __future__ import annotations

from pathlib import Path

import pytest
from dag_runs import read_json, run_dag

from slmops.layout import ModelStore
from slmops.pipeline import locations
from slmops.pipeline.alerts import read as read_alerts

pytestmark = pytest.mark.integration


def test_run_publishes_and_a_cleared_rerun_redoes_nothing(dag_env, conf, tmp_path):
    artifacts = tmp_path / "artifacts"
    result, output = run_dag(dag_env, artifacts, conf)
    assert result["state"] == "success", output[-5000:]
    assert result["tasks"] == {
        "prepare": "success",
        "validate": "success",
        "route_training": "success",
        "finetune": "success",
        "finetune_gpu": "skipped",
        "evaluate": "success",
        "cpu_targets": "success",
        "gpu_targets": "success",
        "optimize[0]": "success",
        "optimize_gpu": "skipped",
        "approve": "skipped",  # require_approval is off
        "report": "success",
        "publish": "success",
    }
    run = locations.run_dir(artifacts, "slm_finetune", result["run_id"])
    validation = read_json(run / "validation" / "validation.json")
    evaluation = read_json(run / "finetune" / "evaluation" / "evaluation.json")
    assert validation["passed"] and evaluation["passed"]
    assert read_json(run / "finetune" / "onnx" / "cpu-fp32" / "export.json")["passed"]
    summary = read_json(run / "report" / "summary.json")
    assert set(summary["stages"].values()) == {"PASS"}
    assert "| optimize[cpu-fp32] | PASS |" in (run / "report" / "report.md").read_text()

    version = ModelStore(artifacts / "models").latest_version("tiny-tones")
    manifest = read_json(version / "manifest.json")
    assert manifest["uri"] == "slmops://models/tiny-tones"
    assert manifest["run_id"] == result["run_id"]
    assert manifest["dataset_fingerprint"] == validation["data"]["fingerprint"]
    assert manifest["base_model"] == str(Path(dag_env["SLMOPS_DATA_ROOTS"]) / "tiny")
    assert manifest["config"]["max_steps"] == 60
    fine_tuned = evaluation["models"]["fine_tuned"]["metrics"]["accuracy"]
    assert manifest["metrics"]["fine_tuned"] == fine_tuned >= 0.5
    assert manifest["metrics"]["base"] < fine_tuned
    assert {gate["name"] for gate in manifest["gates"]} >= {
        "loss_gap",
        "min_improvement",
        "max_export_degradation[cpu-fp32]",
    }
    assert all(gate["passed"] for gate in manifest["gates"])
    assert (version / manifest["targets"]["cpu-fp32"]["path"] / "model.onnx").is_file()

    # A cleared rerun of the same run: same folder, training found finished, one version.
    trained = {path: path.stat().st_mtime_ns for path in (run / "finetune").glob("*.json")}
    again, output = run_dag(dag_env, artifacts, conf)
    assert again["run_id"] == result["run_id"]
    assert again["state"] == "success", output[-5000:]
    assert "already holds this finished run; nothing to train" in output
    assert {path: path.stat().st_mtime_ns for path in trained} == trained
    assert [p.name for p in (artifacts / "models" / "tiny-tones" / "versions").iterdir()] == [
        version.name
    ]
    leftovers = [path for path in artifacts.rglob(".*") if ".tmp-" in path.name]
    assert leftovers == []


def test_failing_gate_stops_at_evaluate_and_exports_nothing(dag_env, conf, tmp_path):
    artifacts = tmp_path / "artifacts"
    result, output = run_dag(dag_env, artifacts, {**conf, "max_steps": 1, "learning_rate": 1e-5})
    assert result["state"] == "failed"
    tasks = result["tasks"]
    assert tasks["finetune"] == "success"
    assert tasks["evaluate"] == "failed"
    assert tasks["optimize"] == tasks["publish"] == "upstream_failed"
    assert tasks["report"] == "success"  # the report explains where the run stopped
    assert "gates failed" in output and "- min_metric[accuracy]: fine-tuned accuracy" in output

    run = locations.run_dir(artifacts, "slm_finetune", result["run_id"])
    gates = {g["name"]: g["passed"] for g in read_json(run / "finetune/evaluation/gates.json")}
    assert gates["min_metric[accuracy]"] is False
    assert not (run / "finetune" / "onnx").exists()
    assert not (artifacts / "models").exists()
    summary = read_json(run / "report" / "summary.json")
    assert summary["stages"]["evaluation"] == "FAIL"
    assert summary["stages"]["optimize[cpu-fp32]"] == "no result"
    assert summary["passed"] is False
    # The failed gate was announced (the default channel: the log and alerts.jsonl).
    (alert,) = [a for a in read_alerts(run) if a["kind"] == "gate_failed"]
    assert alert["task_id"] == "evaluate" and "min_metric[accuracy]" in alert["message"]
    assert "slmops alert" in output or alert["message"] in output
