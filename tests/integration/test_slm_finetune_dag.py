"""`dag.test()` runs of slm_finetune on the tiny model: a run that publishes, a cleared
rerun that redoes nothing, and a run whose gate fails and stops there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmops.pipeline import locations

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("dag_runner.py")
MARKER = "DAG-RESULT "
LOGICAL_DATE = "2026-11-29T10:00:00+00:00"


@pytest.fixture(scope="module")
def dag_env(tmp_path_factory, tiny_model_dir):
    """A migrated SQLite Airflow and a data root with the tiny model and 96 tone rows."""
    from slmops.testing import tiny_pipeline_data

    root = tmp_path_factory.mktemp("slm-finetune-dag")
    data = tiny_pipeline_data(root / "data", tiny_model_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(root / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        SLMOPS_DATA_ROOTS=str(data),
    )
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    return env


@pytest.fixture(scope="module")
def conf():
    from slmops.testing import tiny_pipeline_params

    return tiny_pipeline_params("tiny-tones")


def run_dag(env: dict, artifacts: Path, conf: dict) -> tuple[dict, str]:
    command = [sys.executable, str(RUNNER), "slm_finetune", json.dumps(conf), LOGICAL_DATE]
    env = {**env, "SLMOPS_ARTIFACTS_ROOT": str(artifacts)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    results = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert results, f"the DAG run printed no result (exit {done.returncode}):\n{output[-5000:]}"
    return json.loads(results[-1].removeprefix(MARKER)), output


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


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

    latest = read_json(artifacts / "models" / "tiny-tones" / "latest.json")
    version = Path(latest["path"])
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
