"""slmops.tracking.lineage: what publish read and wrote, for one pipeline and a
multi-adapter run (whose folder has no plan.json of its own)."""

from __future__ import annotations

import json

from slmops.tracking import lineage


def _manifest(root, targets: dict) -> dict:
    version = root / "models" / "tones" / "versions" / "v1"
    return {
        "name": "tones",
        "version": "v1",
        "path": str(version),
        "targets": targets,
        "config": {"lora_r": 8},
        "gates": [],
        "metrics": {},
        "dataset_fingerprint": "ab",
    }


def test_publish_of_a_pipeline_names_its_data_and_targets(tmp_path):
    run = tmp_path / "runs" / "slm_finetune" / "r1"
    run.mkdir(parents=True)
    plan = {"validation": {"data": {"data_files": ["/data/tones.jsonl"]}}}
    (run / "plan.json").write_text(json.dumps(plan))
    described = lineage.publish(run, _manifest(tmp_path, {"cpu-int4": {"path": "onnx/cpu-int4"}}))
    assert described["inputs"] == [
        {"namespace": "file", "name": "/data/tones.jsonl", "version": "ab"},
        {"namespace": "file", "name": str(run / "finetune" / "onnx" / "cpu-int4")},
    ]
    assert described["outputs"][0] == {
        "namespace": "slmops://models",
        "name": "tones",
        "version": "v1",
    }
    version = tmp_path / "models" / "tones" / "versions" / "v1"
    assert described["run"]["targets"]["cpu-int4"]["path"] == str(version / "onnx" / "cpu-int4")


def test_publish_of_a_multi_adapter_run_names_its_shared_export(tmp_path):
    run = tmp_path / "runs" / "slm_multi_adapter" / "r1"
    run.mkdir(parents=True)  # no plan.json: its plan is multi_adapter/plan.json
    described = lineage.publish(
        run, _manifest(tmp_path, {"cpu-int4": {"path": "multi_adapter/cpu-int4"}})
    )
    assert described["inputs"] == [
        {"namespace": "file", "name": str(run / "multi_adapter" / "cpu-int4")}
    ]
    assert described["outputs"][0]["name"] == "tones"
