"""The run report and publishing, on a run folder laid out as the stages write it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from run_folder import RUN_ID, gate, write_json

from slmops.errors import NotPromoted, PublishError
from slmops.layout import ModelStore
from slmops.pipeline import locations, model_versions, stages
from slmops.pipeline.model_versions import version_name
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


def test_publish_copies_the_targets_and_writes_the_manifest(run_dir):
    write(run_dir, run_dir / "report")
    models = run_dir.parents[2] / "models"
    manifest = publish(run_dir, models)
    version = models / "tones" / "versions" / version_name("slm_finetune", RUN_ID)
    assert manifest["path"] == str(version) and manifest["latest"] == version.name
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
    assert manifest["sequence"] == 1
    assert (version / "adapter/adapter_model.safetensors").read_bytes() == b"weights"
    on_disk = json.loads((version / "manifest.json").read_text())
    assert on_disk == {key: value for key, value in manifest.items() if key != "latest"}
    assert (version / "report.html").is_file()
    latest = json.loads((models / "tones" / "latest.json").read_text())
    # relative to the models root, so the store can move
    assert latest["path"] == f"tones/versions/{version.name}" and latest["sequence"] == 1


def test_published_files_are_read_only_copies_with_checksums(run_dir):
    """An edit in the run folder never changes the published model (they were hard links),
    and every published file's sha256 is in the manifest."""
    models = run_dir.parents[2] / "models"
    manifest = publish(run_dir, models)
    version = Path(manifest["path"])
    published = version / "onnx/cpu-int4/model.onnx"
    original = run_dir / "finetune/onnx/cpu-int4/model.onnx"
    assert not os.path.samefile(published, original)
    assert not published.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    original.write_bytes(b"edited in the run folder")
    assert published.read_bytes() == b"onnx"
    files = manifest["files"]
    assert files["onnx/cpu-int4/model.onnx"] == hashlib.sha256(b"onnx").hexdigest()
    assert files["adapter/adapter_model.safetensors"] == hashlib.sha256(b"weights").hexdigest()
    assert "manifest.json" not in files and "onnx/cpu-int4/export.json" in files
    assert model_versions.verify(version) == []


def verify_published(artifacts_root: Path, name: str) -> subprocess.CompletedProcess:
    """`slmops models verify --published NAME`, run as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "slmops", "models", "verify", "--published", name],
        capture_output=True,
        text=True,
        env={**os.environ, "SLMOPS_ARTIFACTS_ROOT": str(artifacts_root)},
    )


def test_a_corrupted_published_file_is_named_by_verify(run_dir, tmp_path):
    models = run_dir.parents[2] / "models"
    version = Path(publish(run_dir, models)["path"])
    weights = version / "adapter/adapter_model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(b"weightz")
    (version / "extra.bin").write_bytes(b"x")
    (version / "onnx/cpu-int4/parity.json").unlink()
    problems = model_versions.verify(version)
    assert len(problems) == 3
    assert problems[0].startswith(f"{weights}: sha256 ") and "corrupted or edited" in problems[0]
    assert problems[1] == f"{version / 'onnx/cpu-int4/parity.json'}: missing"
    assert problems[2] == f"{version / 'extra.bin'}: not in the manifest (added after publishing)"
    done = verify_published(run_dir.parents[2], "tones")
    assert done.returncode == 1, done.stderr
    assert f"tones {version.name}: DAMAGED" in done.stdout
    assert f"{weights}: sha256 " in done.stdout


def test_a_version_published_without_checksums_is_not_called_damaged(run_dir):
    """Versions from before checksums existed cannot be verified: said so, not failed."""
    models = run_dir.parents[2] / "models"
    version = Path(publish(run_dir, models)["path"])
    manifest = ModelStore.manifest(version)
    record = json.loads(manifest.read_text())
    del record["files"]
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(record))
    assert not model_versions.has_checksums(version)
    done = verify_published(run_dir.parents[2], "tones")
    assert done.returncode == 0, done.stderr
    assert f"tones {version.name}: not checked (published by an older slmops" in done.stdout


def test_publishing_again_replaces_the_same_version_only(run_dir):
    models = run_dir.parents[2] / "models"
    publish(run_dir, models)
    (models / "tones/versions/other-run").mkdir()
    again = publish(run_dir, models)
    versions = sorted(p.name for p in (models / "tones/versions").iterdir())
    assert versions == sorted([version_name("slm_finetune", RUN_ID), "other-run"])
    assert again["sequence"] == 1  # the same version keeps its number
    leftovers = [p.name for p in models.rglob(".*") if p.name != ".publish.lock"]
    assert leftovers == []  # no temporaries left behind


def _copy_run(run_dir, dag_id: str, run_id: str = RUN_ID, *, target: str | None = None):
    """The finished run ``run_dir`` as a run of another DAG (and run id, and target)."""
    artifacts = run_dir.parents[2]
    copy = locations.run_dir(artifacts, dag_id, run_id)
    shutil.copytree(run_dir, copy)
    plan = (copy / "plan.json").read_text()
    plan = plan.replace(str(run_dir), str(copy)).replace('"slm_finetune"', f'"{dag_id}"')
    plan = plan.replace(json.dumps(RUN_ID), json.dumps(run_id))
    if target:
        plan = plan.replace("cpu-int4", target)
        (copy / "finetune/onnx/cpu-int4").rename(copy / f"finetune/onnx/{target}")
    (copy / "plan.json").write_text(plan)
    return copy


def test_two_dags_whose_runs_share_an_id_publish_two_versions(run_dir):
    models = run_dir.parents[2] / "models"
    first = publish(run_dir, models)
    other = _copy_run(run_dir, "slm_finetune_copy")
    (other / "finetune/onnx/cpu-int4/model.onnx").write_bytes(b"onnx")  # same target files
    # the other DAG's run is challenged against the first: give it a decision made now
    from slmops.pipeline.champion import PROMOTE

    write_json(
        other / "champion/decision.json",
        {"decision": PROMOTE, "reason": "better", "champion": {"version": first["version"]}},
    )
    second = publish(other, models)
    assert first["version"] != second["version"]
    assert second["version"] == version_name("slm_finetune_copy", RUN_ID)
    for manifest in (first, second):
        assert model_versions.verify(Path(manifest["path"])) == []
    assert (first["sequence"], second["sequence"]) == (1, 2)
    assert ModelStore(models).latest_version("tones").name == second["version"]


def test_a_republished_older_run_does_not_take_latest_back(run_dir):
    models = run_dir.parents[2] / "models"
    older = publish(run_dir, models)
    newer = publish(_copy_run(run_dir, "slm_finetune", "manual__later"), models)
    assert newer["latest"] == newer["version"] and newer["sequence"] == 2
    logs = []
    again = stages.publish(run_dir, models, log=logs.append)  # a cleared, retried older run
    assert again["version"] == older["version"] and again["sequence"] == 1
    assert again["latest"] == newer["version"]
    assert any(f"the latest stays {newer['version']}" in line for line in logs)
    latest = json.loads((models / "tones/latest.json").read_text())
    assert (latest["version"], latest["sequence"]) == (newer["version"], 2)


def test_another_dags_latest_is_challenged_and_kept_when_not_comparable(run_dir):
    """A run of another DAG that was never challenged is challenged under the lock; here
    it shares no target with the champion, so it fails closed and the champion stays."""
    models = run_dir.parents[2] / "models"
    champion = publish(run_dir, models)
    other = _copy_run(run_dir, "slm_other", target="cpu-fp32")
    with pytest.raises(NotPromoted, match="no CPU target in common"):
        publish(other, models)
    assert json.loads((models / "tones/latest.json").read_text())["version"] == champion["version"]
    decision = json.loads((other / "champion/decision.json").read_text())
    assert decision["decision"] == "keep" and decision["champion"]["version"] == champion["version"]


def test_a_decision_made_before_the_latest_moved_is_made_again(run_dir):
    """The other DAG's run was promoted while nothing was published; by its publish a
    champion is: publishing challenges it again (and here keeps the champion)."""
    models = run_dir.parents[2] / "models"
    other = _copy_run(run_dir, "slm_other", target="cpu-fp32")
    write_json(other / "champion/decision.json", {"decision": "promote", "reason": "no champion"})
    champion = publish(run_dir, models)
    with pytest.raises(NotPromoted, match="no CPU target in common"):
        publish(other, models)
    assert json.loads((models / "tones/latest.json").read_text())["version"] == champion["version"]


def test_the_publish_lock_waits_a_bounded_time(run_dir, monkeypatch):
    models = run_dir.parents[2] / "models"
    store = ModelStore(models)
    monkeypatch.setenv(model_versions.LOCK_WAIT_ENV, "0.3")
    store.lock("tones").parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
            str(store.lock("tones")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=r"publishing model tones: another process has held"):
            publish(run_dir, models)
    finally:
        holder.kill()
        holder.wait()
    assert not store.versions("tones").exists()  # nothing written while it waited
    assert publish(run_dir, models)["latest"]  # the holder is gone: the lock is free


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
