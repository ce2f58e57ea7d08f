"""slmops.pipeline.catalog: the rows the UI plugin shows, read from the run folders and
the model store as the stages leave them."""

from __future__ import annotations

import json
import os

import pytest
from run_folder import RUN_ID

from slmops.errors import ConfigError
from slmops.pipeline import alerts, approval, catalog
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
