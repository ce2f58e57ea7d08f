"""What the artifacts root holds, as rows for a UI: pipeline runs and published models.

Everything here is read from files the stages already wrote (plan.json,
report/summary.json, approval/decision.json, alerts.jsonl, the model store's manifests);
nothing is computed or imported beyond the standard library, so a web server can call it
on every request. A file that is missing or half-written makes its row say less, never
the listing fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from slmops.errors import ConfigError
from slmops.layout import MANIFEST_NAME, SUMMARY_NAME, ModelStore, RunLayout
from slmops.pipeline import locations, model_versions
from slmops.pipeline.alerts import read as read_alerts

RUNS_DIR = "runs"
ALERTS_SHOWN = 3  # the newest notices of a run shown in its row


def runs(artifacts_root: Path, *, dag_ids: set[str] | None = None, limit: int = 100) -> list[dict]:
    """The newest pipeline runs first (by when their plan was written), at most ``limit``;
    only those of ``dag_ids`` when given (the DAGs the viewer may read)."""
    planned = []
    for dag_folder in _children(Path(artifacts_root) / RUNS_DIR):
        if dag_ids is not None and dag_folder.name not in dag_ids:
            continue
        for folder in _children(dag_folder):
            layout = RunLayout(folder)
            plan = layout.plan if layout.plan.is_file() else layout.multi_plan
            try:
                planned.append((plan.stat().st_mtime, folder))
            except OSError:
                continue  # no plan: not a run folder (or one being removed)
    planned.sort(key=lambda item: item[0], reverse=True)
    rows = [run_row(folder) for _, folder in planned[: max(limit, 0)]]
    return [row for row in rows if row is not None]


def run_row(run_dir: Path) -> dict | None:
    """One run's outcome and key numbers, or None when it has no readable plan."""
    layout = RunLayout(run_dir)
    plan = _read(layout.plan) or _read(layout.multi_plan)
    if not plan or "run_id" not in plan:
        return None
    summary = _read(layout.report / SUMMARY_NAME)
    alerts = read_alerts(run_dir)
    row: dict[str, Any] = {
        "dag_id": plan.get("dag_id", Path(run_dir).parent.name),
        "run_id": plan["run_id"],
        "model_name": plan.get("model_name"),
        "run_dir": str(run_dir),
        "planned_at": _mtime(layout.plan if layout.plan.is_file() else layout.multi_plan),
        "outcome": "running",
        "stages": {},
        "evaluation": None,
        "targets": {},
        "champion": None,
        "approval": _read(layout.approval),
        "alerts": alerts[-ALERTS_SHOWN:],
        "alert_count": len(alerts),
        "has_report": RunLayout.report_html_in(layout.report).is_file(),
        "published": _published(plan),
    }
    if summary:
        row["outcome"] = "passed" if summary.get("passed") else "failed"
        review = row["approval"] or {}
        if row["outcome"] == "passed" and review.get("approved") is False:
            row["outcome"] = "rejected"  # the gates passed; a reviewer (or the timeout) said no
        row["stages"] = summary.get("stages") or {}
        row["evaluation"] = summary.get("evaluation")
        row["targets"] = summary.get("targets") or {}
        row["champion"] = summary.get("champion")
    if alerts and row["outcome"] == "running":
        row["outcome"] = "failed"  # a failure was notified before any report was written
    return row


def models(artifacts_root: Path) -> list[dict]:
    """Each published model: its versions (newest first), which one is latest, and the
    champion history (the versions in the order they were published)."""
    store = ModelStore(locations.models_root(Path(artifacts_root)))
    listing = []
    for folder in _children(store.root):
        latest = store.latest_named(folder.name)
        latest_name = latest.name if latest is not None else None
        versions = []
        for version in _children(store.versions(folder.name)):
            manifest = _read(version / MANIFEST_NAME)
            if manifest is None:
                continue  # a version being written (atomic_directory renames it whole)
            decision = manifest.get("champion_challenger") or {}
            versions.append(
                {
                    "version": manifest.get("version", version.name),
                    "published_at": manifest.get("published_at"),
                    "sequence": manifest.get("sequence") or 0,
                    "dag_id": manifest.get("dag_id"),
                    "run_id": manifest.get("run_id"),
                    "metrics": manifest.get("metrics") or {},
                    "targets": manifest.get("targets") or {},
                    "decision": decision.get("reason"),
                    "latest": version.name == latest_name,
                }
            )
        if not versions:
            continue
        versions.sort(key=lambda v: (v["sequence"], v["published_at"] or ""), reverse=True)
        listing.append(
            {
                "name": folder.name,
                "uri": f"slmops://models/{folder.name}",
                "latest": latest_name,
                "versions": versions,
                "champion_history": [v["version"] for v in reversed(versions)],
            }
        )
    return listing


def run_file(artifacts_root: Path, dag_id: str, run_id: str, relative: str) -> Path:
    """A file inside one run's folder, for a web page to serve; refuses any path that
    leaves the folder (``..``, absolute paths, links pointing out) with ConfigError and a
    missing file with FileNotFoundError."""
    folder = locations.run_dir(Path(artifacts_root), dag_id, run_id).resolve()
    if not relative or Path(relative).is_absolute():
        raise ConfigError(f"{relative!r}: give a path inside the run folder")
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder):
        raise ConfigError(f"{relative!r} is outside the run folder of {dag_id} {run_id}")
    if not path.is_file():
        raise FileNotFoundError(f"{dag_id} {run_id}: no file {relative}")
    return path


def _published(plan: dict) -> dict | None:
    """Whether the run is a published version of its model, and the model's latest."""
    if not plan.get("models_root") or not plan.get("model_name"):
        return None
    store = ModelStore(plan["models_root"])
    names = (
        model_versions.version_name(plan.get("dag_id", ""), plan["run_id"]),
        model_versions.legacy_version_name(plan["run_id"]),  # published by an older slmops
    )
    version = next(
        (v for v in names if store.manifest(store.version(plan["model_name"], v)).is_file()), None
    )
    if version is None:
        return None
    latest = store.latest_named(plan["model_name"])
    return {"version": version, "latest": latest is not None and latest.name == version}


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(
            entry
            for entry in Path(folder).iterdir()
            if entry.is_dir() and not entry.name.startswith(".")  # temporaries, being written
        )
    except OSError:
        return []


def _read(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
