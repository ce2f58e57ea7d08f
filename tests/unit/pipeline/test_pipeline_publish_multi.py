"""Publishing a multi-adapter run: its version is named by DAG and run, written under the
model's lock with every file's sha256, and latest.json records it relative to the root."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from slmops.layout import ModelStore, RunLayout
from slmops.pipeline import model_versions
from slmops.pipeline.multi_adapter import plan_adapters
from slmops.pipeline.multi_adapter import report as multi
from slmops.testing import TONE_TEMPLATE, tiny_pipeline_data, tiny_pipeline_params


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, tiny_model_dir):
    return tiny_pipeline_data(tmp_path_factory.mktemp("multi") / "data", tiny_model_dir)


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _finished_multi_run(tmp_path, data_root, run_id: str) -> Path:
    shared = {"template_kind": "template", "text_template": TONE_TEMPLATE, "suite": "default"}
    conf = {
        **tiny_pipeline_params("multi", method="lora", lora_r=4),
        "adapters": [
            {"name": "label", "data_files": ["tones.jsonl"], "label_field": "tone", **shared},
            {"name": "echo", "data_files": ["tones.jsonl"], **shared},
        ],
        "multi_target": "cpu-fp32",
    }
    plan = plan_adapters(
        conf,
        dag_id="slm_multi_adapter",
        run_id=run_id,
        artifacts_root=tmp_path / "artifacts",
        data_roots=[data_root],
    )
    run = RunLayout(plan["run_dir"])
    for adapter in plan["adapters"]:
        _write(
            RunLayout(adapter["run_dir"]).finetune.evaluation_report,
            {
                "passed": True,
                "primary_metric": "accuracy",
                "models": {"base": {"metrics": {"accuracy": 0.2}}},
            },
        )
    (run.multi / "cpu-fp32").mkdir(parents=True)
    (run.multi / "cpu-fp32/model.onnx").write_bytes(b"shared base")
    (run.multi / "cpu-fp32/label.onnx_adapter").write_bytes(b"label adapter")
    _write(
        run.multi_scores,
        {
            "target": "cpu-fp32",
            "path": str(run.multi / "cpu-fp32"),
            "size_mb": 0.1,
            "adapters": {"label": {"metric": 0.9}, "echo": {"metric": 0.5}},
        },
    )
    return run.root


def test_a_multi_adapter_version_is_named_checksummed_and_ordered(tmp_path, data_root):
    models = tmp_path / "artifacts/models"
    older_run = _finished_multi_run(tmp_path, data_root, "r1")
    first = multi.publish(older_run, models)
    second = multi.publish(_finished_multi_run(tmp_path, data_root, "r2"), models)
    assert first["version"] == model_versions.version_name("slm_multi_adapter", "r1")
    assert (first["sequence"], second["sequence"]) == (1, 2)
    digest = hashlib.sha256(b"shared base").hexdigest()
    assert first["files"]["multi_adapter/cpu-fp32/model.onnx"] == digest
    latest = json.loads(ModelStore(models).latest("multi").read_text())
    assert latest == {
        "version": second["version"],
        "path": f"multi/versions/{second['version']}",
        "sequence": 2,
        "published_at": second["published_at"],
    }
    again = multi.publish(older_run, models)
    assert again["latest"] == second["version"]  # the older run does not take latest back
    assert multi.collect(older_run)["published"] == first["path"]
    for manifest in (first, second):
        assert model_versions.verify(Path(manifest["path"])) == []
