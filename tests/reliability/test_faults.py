"""Killed exports and publishes, racing publishes, a full disk and a corrupted file, on
real files: the published model and latest.json are always a whole old or new version,
and a retry redoes the stage and cleans what the killed one left."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_runs import TARGET, finished_run

from slmops.artifacts import atomic_write_json
from slmops.export.optimize import optimize
from slmops.layout import ModelStore
from slmops.pipeline import model_versions
from slmops.pipeline.publish import publish


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name != ".publish.lock")


def _live_version(models: Path) -> str:
    """The version latest.json names, checked whole against its manifest's checksums."""
    store = ModelStore(models)
    latest = store.latest_version("tones")
    assert latest is not None, "latest.json names no whole version"
    assert model_versions.verify(latest) == []
    return latest.name


def test_a_killed_export_leaves_no_output_and_its_retry_redoes_it(tiny_model_dir, tmp_path, child):
    out = tmp_path / "onnx" / TARGET
    out.parent.mkdir()
    # Killed with the model built and its records written, just before the rename.
    export = child(
        "slmops.export.optimize:write_report::before", "optimize", tiny_model_dir, TARGET, out
    )
    export.wait_paused()
    export.kill()
    assert not out.exists()
    assert {name.split(".tmp-")[0] for name in _leftovers(out.parent)} == {
        f".{TARGET}",
        f".{TARGET}.merge",
    }
    result = optimize(tiny_model_dir, TARGET, out, parity=False, benchmark=False)
    assert result.record["passed"] is True and (out / "model.onnx").stat().st_size > 0
    assert _leftovers(out.parent) == []  # the killed export's folders are gone


@pytest.mark.parametrize(
    "pause",
    [
        "slmops.pipeline.publish:_copy_file:model.onnx:after",  # the new version half copied
        "os:replace:latest.json:before",  # the version renamed in, latest.json not yet moved
    ],
)
def test_a_killed_publish_leaves_the_old_or_the_new_version(tiny_export, tmp_path, child, pause):
    artifacts = tmp_path / "artifacts"
    models = artifacts / "models"
    old = publish(finished_run(artifacts, "run_1", tiny_export), models)
    new_run = finished_run(artifacts, "run_2", tiny_export)
    killed = child(pause, "publish", new_run, models)
    killed.wait_paused()
    killed.kill()
    assert _live_version(models) == old["version"]  # the old version, whole
    retried = publish(new_run, models)  # the retry redoes it
    assert _live_version(models) == retried["version"] != old["version"]
    assert retried["sequence"] == 2
    assert _leftovers(models) == []


def test_a_publish_killed_while_replacing_its_own_version(tiny_export, tmp_path, child):
    """A retried publish of the live version, killed right after the new folder took the
    old one's place: latest names a whole version throughout."""
    artifacts = tmp_path / "artifacts"
    models = artifacts / "models"
    run = finished_run(artifacts, "run_1", tiny_export)
    first = publish(run, models)
    killed = child("shutil:rmtree:.tmp-:before", "publish", run, models)
    killed.wait_paused()
    killed.kill()
    assert _live_version(models) == first["version"]
    again = publish(run, models)
    assert (again["version"], again["sequence"]) == (first["version"], 1)
    assert _leftovers(models) == []


def test_two_concurrent_publishes_of_one_model_take_turns(tiny_export, tmp_path, child):
    artifacts = tmp_path / "artifacts"
    models = artifacts / "models"
    publish(finished_run(artifacts, "run_1", tiny_export), models)
    first_run = finished_run(artifacts, "run_2", tiny_export)
    second_run = finished_run(artifacts, "run_3", tiny_export)
    first = child(
        "slmops.pipeline.publish:_copy_file:model.onnx:after",
        "publish",
        first_run,
        models,
        name="first",
    )
    first.wait_paused()  # it holds the model's lock, half way through its copy
    second = child("-", "publish", second_run, models, name="second")
    time.sleep(2.0)
    assert second.process.poll() is None  # waiting for the lock
    assert not any(
        p.name.startswith("slm_finetune_run_3") for p in (models / "tones/versions").iterdir()
    )
    code, out, err = first.go_on()
    assert code == 0, err
    out2, err2 = second.process.communicate(timeout=60)
    assert second.process.returncode == 0, err2
    versions = {line.split()[0]: int(line.split()[1]) for line in (out, out2)}
    assert sorted(versions.values()) == [2, 3]
    assert _live_version(models) == max(versions, key=versions.get)
    for version in versions:
        assert model_versions.verify(models / "tones/versions" / version) == []
    assert _leftovers(models) == []


def test_a_full_disk_is_refused_clearly_and_leaves_nothing(
    tiny_export, tiny_model_dir, tmp_path, small_disk
):
    artifacts = tmp_path / "artifacts"
    run = finished_run(artifacts, "run_1", tiny_export)
    models = small_disk / "models"
    with pytest.raises(
        OSError,
        match=r"not enough disk space in .*small-disk/models/tones/"
        r"versions for version .* it needs about \d+ bytes",
    ) as refused:
        publish(run, models)
    assert refused.value.errno == errno.ENOSPC
    # nothing written but the model's lock file
    assert sorted(p.name for p in small_disk.rglob("*")) == [".publish.lock", "models", "tones"]
    assert not (models / "tones/versions").exists() and not (models / "tones/latest.json").exists()

    out = small_disk / "onnx" / TARGET
    out.parent.mkdir()
    with pytest.raises(
        OSError, match=rf"not enough disk space in .*small-disk/onnx for the {TARGET} export"
    ):
        optimize(tiny_model_dir, TARGET, out, parity=False, benchmark=False)
    assert not out.exists() and _leftovers(small_disk) == []


def test_a_write_cut_by_a_full_disk_keeps_the_old_file(small_disk):
    """ENOSPC in the middle of a write (past any free-space check): the old file stays,
    no temporary is left."""
    latest = small_disk / "latest.json"
    atomic_write_json(latest, {"version": "old"})
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as handle, pytest.raises(OSError):
        while True:
            handle.write(b"\0" * 4096)
    with pytest.raises(OSError) as full:
        atomic_write_json(latest, {"version": "new", "padding": "x" * 200_000})
    assert full.value.errno == errno.ENOSPC
    filler.unlink()
    assert json.loads(latest.read_text()) == {"version": "old"}
    assert sorted(p.name for p in small_disk.iterdir()) == ["latest.json"]


def test_a_corrupted_published_file_is_detected(tiny_export, tmp_path):
    artifacts = tmp_path / "artifacts"
    manifest = publish(finished_run(artifacts, "run_1", tiny_export), artifacts / "models")
    weights = Path(manifest["path"]) / "onnx" / TARGET / "model.onnx"
    weights.chmod(0o644)
    with open(weights, "r+b") as handle:  # one flipped byte in the middle
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    (problem,) = model_versions.verify(Path(manifest["path"]))
    assert problem.startswith(f"{weights}: sha256 ")
    done = subprocess.run(
        [sys.executable, "-m", "slmops", "models", "verify", "--published", "tones"],
        capture_output=True,
        text=True,
        env={**os.environ, "SLMOPS_ARTIFACTS_ROOT": str(artifacts)},
    )
    assert done.returncode == 1 and f"{weights}: sha256 " in done.stdout
