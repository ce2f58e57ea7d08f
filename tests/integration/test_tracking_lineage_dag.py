"""A tracked slm_finetune `dag.test()` run: MLflow (embedded store) and OpenLineage events
through the file transport, no server anywhere."""

from __future__ import annotations

import json

import pytest
from dag_runs import read_json, run_dag

from slmops.pipeline import locations

pytestmark = pytest.mark.integration


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _completed(events: list[dict], task: str) -> dict:
    found = [
        e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"slm_finetune.{task}"
    ]
    assert found, f"no COMPLETE event of {task}: {[e['job']['name'] for e in events]}"
    return found[-1]


def test_a_tracked_run_reports_lineage_and_registers_the_champion(dag_env, conf, tmp_path):
    artifacts = tmp_path / "artifacts"
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **dag_env,
        "SLMOPS_TRACKING": "on",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "slmops-test",
    }
    result, output = run_dag(env, artifacts, {**conf, "model_name": "lineage-tones"})
    assert result["state"] == "success", output[-5000:]
    run = locations.run_dir(artifacts, "slm_finetune", result["run_id"])
    data_file = dag_env["SLMOPS_DATA_ROOTS"] + "/tones.jsonl"
    fingerprint = read_json(run / "validation" / "validation.json")["data"]["fingerprint"]
    version = read_json(artifacts / "models" / "lineage-tones" / "latest.json")["version"]

    events = _events(events_file)
    publish = _completed(events, "publish")
    inputs = {(d["namespace"], d["name"]): d for d in publish["inputs"]}
    outputs = {(d["namespace"], d["name"]): d for d in publish["outputs"]}
    assert inputs[("file", data_file)]["facets"]["version"]["datasetVersion"] == fingerprint
    published = outputs[("slmops://models", "lineage-tones")]
    assert published["facets"]["version"]["datasetVersion"] == version
    assert ("file", str(artifacts / "models" / "lineage-tones" / "versions" / version)) in outputs
    facets = publish["run"]["facets"]
    assert facets["slmops_hyperparameters"]["values"]["max_steps"] == 60
    assert all(gate["passed"] for gate in facets["slmops_gates"]["values"]["gates"])

    validate = _completed(events, "validate")
    [checked] = validate["inputs"]
    assert checked["name"] == data_file
    assertions = checked["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) >= 10 and all(a["success"] for a in assertions)

    finetune = _completed(events, "finetune")
    assert ("file", data_file) in {(d["namespace"], d["name"]) for d in finetune["inputs"]}
    assert [d["name"] for d in finetune["outputs"]] == [str(run / "finetune" / "merged")]
    assert finetune["run"]["facets"]["slmops_hyperparameters"]["values"]["learning_rate"] == 0.01
    gates = _completed(events, "evaluate")["run"]["facets"]["slmops_gates"]["values"]
    assert gates["passed"] and {g["name"] for g in gates["gates"]} >= {"loss_gap"}
    optimize = _completed(events, "optimize")
    assert optimize["outputs"][0]["name"] == str(run / "finetune" / "onnx" / "cpu-fp32")

    tracking = read_json(run / "tracking.json")
    assert tracking["enabled"] and set(tracking["stages"]) == {
        "validation", "finetune", "evaluation", "optimize[cpu-fp32]"
    }  # fmt: skip
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking["uri"], registry_uri=tracking["uri"])
    champion = client.get_model_version_by_alias("lineage-tones", "champion")
    assert champion.tags["slmops.version"] == version
    assert champion.tags["slmops.run_id"] == result["run_id"]
    assert client.get_run(tracking["run_id"]).data.tags["slmops.dag_id"] == "slm_finetune"
    assert f"tracked: MLflow run {tracking['run_id']}" in output  # the report task's log
