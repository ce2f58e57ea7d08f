"""A pipeline run in MLflow: one run per pipeline run, a nested run per stage.

Recorded from what the stages wrote into the run folder, when the run's report is
written (the report task runs whatever stage the pipeline reached), so the tracker holds
exactly what the report shows, for Airflow runs and ``slmops run`` alike, and a
multi-process training needs no tracking code on each rank. RUN_DIR/tracking.json keeps
the MLflow run ids (a retried report replaces its stage runs instead of adding more) or
says why the run is not tracked; the report prints that.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.layout import RunLayout
from slmops.progress import Log, no_log
from slmops.tracking.client import Tracker, Unavailable, open_tracker
from slmops.tracking.records import (
    MAX_TEXT,
    TAG_PREFIX,
    flat,
    metric_key,
    run_record,
    stage_records,
)
from slmops.tracking.settings import TrackingSettings

PREDICTIONS_TABLE = "predictions.json"
_BATCH = 100  # MLflow takes at most 100 params or tags, 1000 metrics, per batch


def tracked_status(run_dir: Path, settings: TrackingSettings) -> dict | None:
    """The run's tracking.json when the run is tracked in ``settings``' store, else None."""
    status = read_status(run_dir) or {}
    return status if status.get("enabled") and status.get("uri") == settings.uri else None


def read_status(run_dir: Path) -> dict | None:
    """RUN_DIR/tracking.json: where the run is tracked, or why it is not."""
    return read_json_if_any(RunLayout(run_dir).tracking)


def record_run(
    run_dir: Path, summary: dict, settings: TrackingSettings, *, log: Log = no_log
) -> dict:
    """Put the run and each stage that has a result into the tracker; write and return
    RUN_DIR/tracking.json. Never raises for a tracker problem."""
    run_dir = Path(run_dir)
    tracker = open_tracker(settings, log)
    if isinstance(tracker, Unavailable):
        return _write_status(
            run_dir, {"enabled": False, "uri": tracker.uri, "reason": tracker.reason}
        )
    previous = tracked_status(run_dir, settings) or {}
    status = {"enabled": True, "uri": settings.uri, "experiment_id": tracker.experiment_id}
    with tracker.safely("recording the run"):
        parent = _parent(tracker, previous.get("run_id"), summary)
        for old in (previous.get("stages") or {}).values():
            _delete(tracker, old)
        _log_run_record(tracker, parent, run_record(run_dir, summary))
        stages = {
            name: _stage_run(tracker, parent, name, record)
            for name, record in stage_records(run_dir, summary).items()
        }
        status.update(run_id=parent, stages=stages)
    if tracker.problem:
        status = {"enabled": False, "uri": settings.uri, "reason": tracker.problem}
    return _write_status(run_dir, status)


def record_report(
    run_dir: Path, report_dir: Path, settings: TrackingSettings, passed: bool, *, log: Log = no_log
) -> None:
    """Attach the written report to the run's MLflow run and close it."""
    status = tracked_status(run_dir, settings)
    if status is None:
        return
    tracker = open_tracker(settings, log)
    if isinstance(tracker, Unavailable):
        return
    with tracker.safely("attaching the report"):
        tracker.client.log_artifacts(status["run_id"], str(report_dir), "report")
        tracker.client.set_terminated(status["run_id"], "FINISHED" if passed else "FAILED")


def _write_status(run_dir: Path, status: dict) -> dict:
    atomic_write_json(RunLayout(run_dir).tracking, status)
    return status


def _parent(tracker: Tracker, run_id: str | None, summary: dict) -> str:
    client = tracker.client
    if run_id:
        try:
            existing = client.get_run(run_id)
            if existing.info.lifecycle_stage == "active":
                return run_id
        except Exception:  # deleted or never there: start a new one
            pass
    tags = {
        f"{TAG_PREFIX}kind": "pipeline",
        f"{TAG_PREFIX}dag_id": summary["dag_id"],
        f"{TAG_PREFIX}run_id": summary["run_id"],
        f"{TAG_PREFIX}model_name": summary["model_name"],
        f"{TAG_PREFIX}run_dir": summary["run_dir"],
        f"{TAG_PREFIX}base_model": summary["base_model"],
        f"{TAG_PREFIX}dataset_fingerprint": summary["dataset_fingerprint"] or "",
    }
    run = client.create_run(
        tracker.experiment_id, run_name=f"{summary['model_name']} {summary['run_id']}", tags=tags
    )
    plan = read_json_if_any(RunLayout(summary["run_dir"]).plan) or {}
    _log(tracker, run.info.run_id, params=flat(plan.get("params") or {}))
    return run.info.run_id


def _log_run_record(tracker: Tracker, run_id: str, record: dict) -> None:
    _log(tracker, run_id, metrics=record["metrics"], tags=record["tags"])
    if record["dataset"]:
        _log_dataset(tracker.client, run_id, record["dataset"])


def _stage_run(tracker: Tracker, parent: str, name: str, record: dict) -> str:
    client = tracker.client
    run = client.create_run(
        tracker.experiment_id,
        run_name=name,
        tags={"mlflow.parentRunId": parent, f"{TAG_PREFIX}stage": name, **record["tags"]},
    )
    run_id = run.info.run_id
    _log(
        tracker,
        run_id,
        params=record["params"],
        metrics=record["metrics"],
        history=record.get("history"),
    )
    for path in record["files"]:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path))
    if record.get("table"):
        client.log_table(run_id, data=record["table"], artifact_file=PREDICTIONS_TABLE)
    client.set_terminated(run_id, "FINISHED" if record["passed"] else "FAILED")
    return run_id


def _log(
    tracker: Tracker, run_id: str, *, params=None, metrics=None, tags=None, history=None
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = _now_ms()
    params = [Param(metric_key(k), _param(v)) for k, v in (params or {}).items() if v is not None]
    points = [
        Metric(metric_key(k), float(v), now, 0) for k, v in (metrics or {}).items() if _number(v)
    ]
    points += [
        Metric(metric_key(k), float(v), now, int(step))
        for k, v, step in history or []
        if _number(v)
    ]
    tags = [RunTag(k, str(v)[:MAX_TEXT]) for k, v in (tags or {}).items()]
    for start in range(0, max(len(params), len(points), len(tags)), _BATCH):
        tracker.client.log_batch(
            run_id,
            metrics=points[start : start + _BATCH],
            params=params[start : start + _BATCH],
            tags=tags[start : start + _BATCH],
        )


def _log_dataset(client, run_id: str, dataset: dict) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    entity = Dataset(schema=None, **dataset)
    client.log_inputs(
        run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])]
    )


def _delete(tracker: Tracker, run_id: str | None) -> None:
    if run_id:
        with contextlib.suppress(Exception):  # already gone
            tracker.client.delete_run(run_id)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:MAX_TEXT]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
