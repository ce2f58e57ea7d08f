"""The run report and publishing, on a run folder laid out as the stages write it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from run_folder import RUN_ID, gate

from slmops.errors import PublishError
from slmops.pipeline import locations
from slmops.pipeline.publish import publish
from slmops.pipeline.summary import collect, latest_run, write


def test_report_gathers_every_stage(run_dir):
    summary = write(run_dir, run_dir / "report")
    assert summary["passed"] is True
    assert summary["stages"] == {
        "validation": "PASS",
        "finetune": "PASS",
        "evaluation": "PASS",
        "optimize[cpu-int4]": "PASS",
    }
    assert summary["evaluation"]["base"] == 0.05 and summary["evaluation"]["fine_tuned"] == 0.98
    target = summary["targets"]["cpu-int4"]
    assert (target["metric"], target["pytorch_metric"], target["decode_speedup"]) == (
        0.97,
        0.98,
        6.1,
    )
    markdown = (run_dir / "report/report.md").read_text()
    assert "| cpu-int4 | PASS | 84.5 | 0.97 | 170 | 6.1 |" in markdown
    assert "accuracy on 63 held-out rows: base 0.05, fine-tuned 0.98" in markdown
    assert (run_dir / "report/report.html").read_text().startswith("<!DOCTYPE html>")


def test_report_of_a_run_stopped_at_a_gate_says_what_did_not_run(run_dir):
    import shutil

    shutil.rmtree(run_dir / "finetune/onnx")
    evaluation = run_dir / "finetune/evaluation/evaluation.json"
    failed = json.loads(evaluation.read_text())
    failed.update(passed=False, gates=[gate("min_metric[accuracy]", False)])
    evaluation.write_text(json.dumps(failed))
    summary = collect(run_dir)
    assert summary["passed"] is False
    assert summary["stages"]["evaluation"] == "FAIL"
    assert summary["stages"]["optimize[cpu-int4]"] == "no result"
    with pytest.raises(PublishError, match="evaluation, optimize\\[cpu-int4\\] did not pass"):
        publish(run_dir, run_dir.parents[2] / "models")
    assert not (run_dir.parents[2] / "models").exists()


def test_publish_links_the_targets_and_writes_the_manifest(run_dir):
    write(run_dir, run_dir / "report")
    models = run_dir.parents[2] / "models"
    manifest = publish(run_dir, models)
    version = models / "tones" / "versions" / locations.safe_name(RUN_ID)
    assert manifest["path"] == str(version)
    assert manifest["uri"] == "slmops://models/tones"
    assert manifest["dataset_fingerprint"] == "f" * 64
    assert manifest["base_model"] == "smollm2-135m-instruct"
    assert manifest["metrics"] == {"primary_metric": "accuracy", "base": 0.05, "fine_tuned": 0.98}
    assert [g["name"] for g in manifest["gates"]] == [
        "loss_gap",
        "min_improvement",
        "max_export_degradation[cpu-int4]",
    ]
    assert manifest["targets"]["cpu-int4"]["path"] == "onnx/cpu-int4"
    assert manifest["config"]["model_name"] == "tones"
    published = version / "onnx/cpu-int4/model.onnx"
    original = run_dir / "finetune/onnx/cpu-int4/model.onnx"
    assert os.path.samefile(published, original)  # a hard link, not a copy of the weights
    assert (version / "adapter/adapter_model.safetensors").read_bytes() == b"weights"
    assert json.loads((version / "manifest.json").read_text()) == manifest
    assert (version / "report.html").is_file()
    latest = json.loads((models / "tones" / "latest.json").read_text())
    assert latest["path"] == str(version)
    assert collect(run_dir)["published"] == str(version)


def test_publishing_again_replaces_the_same_version_only(run_dir):
    models = run_dir.parents[2] / "models"
    publish(run_dir, models)
    (models / "tones/versions/other-run").mkdir()
    publish(run_dir, models)
    versions = sorted(p.name for p in (models / "tones/versions").iterdir())
    assert versions == [locations.safe_name(RUN_ID), "other-run"]
    assert [p.name for p in models.rglob(".*")] == []  # no temporaries left behind


def test_latest_run_and_the_report_command(run_dir, tmp_path):
    assert latest_run(tmp_path / "artifacts") == run_dir
    done = subprocess.run(
        [sys.executable, "-m", "slmops", "report", "--artifacts_root", str(tmp_path / "artifacts")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "accuracy: base 0.05 -> fine-tuned 0.98 on 63 held-out rows" in done.stdout
    assert "cpu-int4: PASS, 84.5 MB, 0.97 (PyTorch 0.98), 170 tokens/s, 6.1x PyTorch" in done.stdout
    empty = subprocess.run(
        [sys.executable, "-m", "slmops", "report", "--artifacts_root", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert empty.returncode != 0 and "no pipeline runs yet" in empty.stderr
