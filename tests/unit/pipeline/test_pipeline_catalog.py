"""slmops.pipeline.catalog: the rows the UI plugin shows, read from the run folders and
the model store as the stages leave them."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from run_folder import RUN_ID

from slmops.errors import ConfigError
from slmops.pipeline import alerts, approval, catalog, locations
from slmops.pipeline.publish import publish
from slmops.pipeline.summary import write


def artifacts(run) -> object:
    return run.parents[2]


def test_a_running_run_is_listed_from_its_plan_alone(run_dir):
    (row,) = catalog.runs(artifacts(run_dir))
    assert (row["dag_id"], row["run_id"], row["model_name"]) == ("slm_finetune", RUN_ID, "tones")
    assert row["outcome"] == "running" and not row["has_report"] and row["published"] is None
    assert row["evaluation"] is None and row["alert_count"] == 0


def test_a_reported_published_run_has_its_numbers_approval_and_version(run_dir):
    write(run_dir, run_dir / "report")
    approval.record(run_dir, approval.APPROVED, by="ana", reason="fine")
    manifest = publish(run_dir, artifacts(run_dir) / "models")

    (row,) = catalog.runs(artifacts(run_dir))
    assert row["outcome"] == "passed" and row["has_report"]
    assert row["evaluation"]["fine_tuned"] == 0.98
    assert row["targets"]["cpu-int4"]["decode_tokens_per_s"] == 170.0
    assert row["approval"]["by"] == "ana"
    assert row["published"] == {"version": manifest["version"], "latest": True}

    (model,) = catalog.models(artifacts(run_dir))
    assert model["name"] == "tones" and model["latest"] == manifest["version"]
    assert model["champion_history"] == [manifest["version"]]
    assert model["versions"][0]["metrics"]["fine_tuned"] == 0.98


@pytest.mark.parametrize("decision", [approval.REJECTED, approval.TIMED_OUT])
def test_a_run_whose_review_said_no_is_listed_as_rejected(run_dir, decision):
    approval.record(run_dir, decision, by="ana", reason="answers too long")
    write(run_dir, run_dir / "report")

    (row,) = catalog.runs(artifacts(run_dir))
    assert row["outcome"] == "rejected" and row["published"] is None


def test_alerts_mark_a_run_failed_and_the_newest_are_shown(run_dir):
    for number in range(5):
        alerts.record(
            run_dir,
            kind="gate_failed",
            dag_id="slm_finetune",
            run_id=RUN_ID,
            task_id="evaluate",
            message=f"alert {number}",
            sent_to=["log"],
        )
    (row,) = catalog.runs(artifacts(run_dir))
    assert row["outcome"] == "failed" and row["alert_count"] == 5
    assert [a["message"] for a in row["alerts"]] == ["alert 2", "alert 3", "alert 4"]


def test_filters_limits_and_unreadable_folders(run_dir):
    root = artifacts(run_dir)
    assert catalog.runs(root, dag_ids={"slm_hpo"}) == []
    assert catalog.runs(root, limit=0) == []
    (root / "runs" / "slm_finetune" / "no-plan").mkdir()
    broken = root / "runs" / "slm_finetune" / "broken"
    broken.mkdir()
    (broken / "plan.json").write_text("{ half")
    os.utime(broken / "plan.json", (0, 0))
    assert [row["run_id"] for row in catalog.runs(root)] == [RUN_ID]
    assert catalog.models(root) == [] and catalog.runs(root / "nowhere") == []


def test_run_files_stay_inside_the_run_folder(run_dir):
    root = artifacts(run_dir)
    found = catalog.run_file(root, "slm_finetune", RUN_ID, "validation/validation.json")
    assert json.loads(found.read_text())["passed"] is True
    for escape in ("../../../models", "/etc/passwd", "", "finetune/../../.."):
        with pytest.raises(ConfigError):
            catalog.run_file(root, "slm_finetune", RUN_ID, escape)
    (run_dir / "outside").symlink_to(root.parent)
    with pytest.raises(ConfigError, match="outside the run folder"):
        catalog.run_file(root, "slm_finetune", RUN_ID, "outside/data/tones.jsonl")
    with pytest.raises(FileNotFoundError):
        catalog.run_file(root, "slm_finetune", RUN_ID, "report/report.html")


def test_versions_are_listed_in_publish_order_without_temporaries(run_dir):
    """Versions named by DAG and run, ordered by their sequence number; a version being
    written (or a killed write's leftover, with its manifest) is not a version."""
    root = artifacts(run_dir)
    first = publish(run_dir, root / "models")
    versions = root / "models/tones/versions"
    leftover = versions / f".{first['version']}.tmp-0000abcd-1-elsewhere"
    shutil.copytree(versions / first["version"], leftover)
    legacy = versions / "older-run"
    legacy.mkdir()
    (legacy / "manifest.json").write_text(
        json.dumps({"version": "older-run", "published_at": "2099-01-01T00:00:00Z"})
    )
    (model,) = catalog.models(root)
    assert [v["version"] for v in model["versions"]] == [first["version"], "older-run"]
    assert model["latest"] == first["version"] and model["versions"][0]["latest"]
    assert model["champion_history"] == ["older-run", first["version"]]


def test_a_run_published_under_the_old_version_name_is_still_found(run_dir):
    root = artifacts(run_dir)
    publish(run_dir, root / "models")
    versions = root / "models/tones/versions"
    (new,) = versions.iterdir()
    new.rename(versions / locations.safe_name(RUN_ID))  # how older slmops named it
    (row,) = catalog.runs(root)
    assert row["published"] == {"version": locations.safe_name(RUN_ID), "latest": False}
