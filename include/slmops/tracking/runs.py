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
import re
from pathlib import Path
from typing import Any

from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.layout import EVALUATION_NAME, GATES_NAME, RunLayout
from slmops.progress import Log, no_log
from slmops.tracking.client import Tracker, Unavailable, open_tracker
from slmops.tracking.settings import TrackingSettings

PREDICTIONS_NAME = "predictions.jsonl"  # written by slmops.evaluation.report
PREDICTIONS_TABLE = "predictions.json"
_TARGET_FILES = ("export.json", "parity.json", "benchmark.json")
_MAX_PARAM = 6000  # MLflow's limit on a parameter's value
_BATCH = 100  # MLflow takes at most 100 params or tags, 1000 metrics, per batch
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]+")
TAG_PREFIX = "slmops."


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
    previous = read_status(run_dir) or {}
    same_store = previous.get("uri") == settings.uri and previous.get("enabled")
    status = {"enabled": True, "uri": settings.uri, "experiment_id": tracker.experiment_id}
    with tracker.safely("recording the run"):
        parent = _parent(tracker, previous.get("run_id") if same_store else None, summary)
        for old in (previous.get("stages") or {}).values() if same_store else ():
            _delete(tracker, old)
        stages = {
            name: _stage_run(tracker, parent, name, record)
            for name, record in _stage_records(run_dir, summary).items()
        }
        status.update(run_id=parent, stages={k: v for k, v in stages.items() if v})
    if tracker.problem:
        status = {"enabled": False, "uri": settings.uri, "reason": tracker.problem}
    return _write_status(run_dir, status)


def record_report(
    run_dir: Path, report_dir: Path, settings: TrackingSettings, passed: bool, *, log: Log = no_log
) -> None:
    """Attach the written report to the run's MLflow run and close it."""
    status = read_status(run_dir) or {}
    if not status.get("enabled") or status.get("uri") != settings.uri:
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
    _log(tracker, run.info.run_id, params=_flat(plan.get("params") or {}))
    return run.info.run_id


def _stage_records(run_dir: Path, summary: dict) -> dict[str, dict]:
    """Each stage with a result: what its nested run logs."""
    layout = RunLayout(run_dir)
    records: dict[str, dict] = {}
    validation = read_json_if_any(layout.validation_report)
    if validation:
        records["validation"] = _validation(layout, validation)
    training = read_json_if_any(layout.finetune.metrics)
    if training:
        records["finetune"] = _training(layout, training)
    evaluation = read_json_if_any(layout.finetune.evaluation_report)
    if evaluation:
        records["evaluation"] = _evaluation(layout, evaluation)
    for target, record in summary["targets"].items():
        records[f"optimize[{target}]"] = _target(layout, target, record)
    if summary.get("champion"):
        records["champion"] = _champion(summary["champion"])
    overall = summary.get("evaluation") or {}
    records["_parent"] = {
        "metrics": {
            "passed": float(summary["passed"]),
            f"base.{overall.get('primary_metric')}": overall.get("base"),
            f"fine_tuned.{overall.get('primary_metric')}": overall.get("fine_tuned"),
        }
        if overall
        else {"passed": float(summary["passed"])},
        "tags": {f"{TAG_PREFIX}outcome": "PASS" if summary["passed"] else "FAIL"},
        "dataset": _dataset(summary, validation),
    }
    return records


def _validation(layout: RunLayout, report: dict) -> dict:
    failed = [check["name"] for check in report["checks"] if not check["passed"]]
    return {
        "passed": report["passed"],
        "params": {"suite": report.get("suite"), **_flat(report["data"], "data.")},
        "metrics": {
            "train_rows": report["data"]["train_rows"],
            "eval_rows": report["data"]["eval_rows"],
            "checks": len(report["checks"]),
            "checks_failed": len(failed),
        },
        "tags": {f"{TAG_PREFIX}failed_checks": ", ".join(failed) or "none"},
        "files": [layout.validation_report],
    }


def _training(layout: RunLayout, metrics: dict) -> dict:
    history: list[tuple[str, float, int]] = []
    for entry in metrics.get("train_loss_history") or []:
        for key in ("loss", "learning_rate", "grad_norm"):
            if key in entry:
                history.append((key, entry[key], entry["step"]))
    for entry in metrics.get("eval_loss_history") or []:
        history.append(("eval_loss", entry["eval_loss"], entry["step"]))
    scalars = (
        "global_step", "final_train_loss", "final_eval_loss", "best_eval_loss", "epochs",
        "tokens_per_second", "train_tokens", "train_runtime_s", "wall_time_s",
        "trainable_parameters", "total_parameters", "model_memory_mb", "global_batch_size",
        "num_processes",
    )  # fmt: skip
    values = {key: metrics.get(key) for key in scalars}
    values.update(
        {f"peak_memory_mb.{k}": v for k, v in (metrics.get("peak_memory_mb") or {}).items()}
    )
    return {
        "passed": True,
        "params": _flat(metrics.get("config") or {}),
        "metrics": values,
        "history": history,
        "tags": {
            f"{TAG_PREFIX}method": metrics.get("method") or "",
            f"{TAG_PREFIX}stopped_early": str(metrics.get("stopped_early")),
        },
        "files": [layout.finetune.metrics, layout.finetune.run_record],
    }


def _evaluation(layout: RunLayout, report: dict) -> dict:
    folder = layout.finetune.evaluation
    values: dict[str, Any] = {"eval_rows": report["eval_rows"]}
    for model, entry in report["models"].items():
        values.update({f"{model}.{name}": value for name, value in entry["metrics"].items()})
    values.update({f"delta.{name}": value for name, value in report["delta"].items()})
    tags = {}
    for gate in report["gates"]:
        key = _key(gate["name"])
        values[f"gate.{key}.observed"] = gate.get("observed")
        values[f"gate.{key}.threshold"] = gate.get("threshold")
        values[f"gate.{key}.passed"] = float(gate["passed"])
        tags[f"gate.{key}"] = ("PASS" if gate["passed"] else "FAIL") + f": {gate['explanation']}"
    return {
        "passed": report["passed"],
        "params": {"primary_metric": report["primary_metric"], "task": report["task"]},
        "metrics": values,
        "tags": tags,
        "files": [
            folder / EVALUATION_NAME,
            folder / GATES_NAME,
            *sorted(folder.glob("*.png")),
            *sorted(folder.glob("report.*")),
        ],
        "table": _predictions(folder / PREDICTIONS_NAME),
    }


def _target(layout: RunLayout, target: str, record: dict) -> dict:
    folder = layout.onnx(target)
    parity = read_json_if_any(folder / "parity.json") or {}
    values = {
        key: record.get(key)
        for key in ("size_mb", "metric", "pytorch_metric", "decode_tokens_per_s", "decode_speedup")
    }
    values.update({f"agreement.{k}": v for k, v in (parity.get("agreement") or {}).items()})
    for gate in record["gates"]:
        values[f"gate.{_key(gate['name'])}.observed"] = gate.get("observed")
        values[f"gate.{_key(gate['name'])}.passed"] = float(gate["passed"])
    return {
        "passed": record["passed"],
        "params": {"target": target, "exporter": record["exporter"]},
        "metrics": values,
        "tags": {},
        "files": [folder / name for name in _TARGET_FILES],
    }


def _champion(decision: dict) -> dict:
    values = {"gain": decision.get("gain")}
    values["challenger_metric"] = (decision.get("challenger") or {}).get("metric")
    values["champion_metric"] = (decision.get("champion") or {}).get("metric")
    return {
        "passed": True,
        "params": {"margin": decision.get("margin"), "target": decision.get("target")},
        "metrics": values,
        "tags": {
            f"{TAG_PREFIX}decision": decision["decision"],
            f"{TAG_PREFIX}reason": decision["reason"][:_MAX_PARAM],
        },
        "files": [],
    }


def _dataset(summary: dict, validation: dict | None) -> dict | None:
    """The training data as an MLflow dataset: its files, fingerprint and validation."""
    if not summary["dataset_fingerprint"]:
        return None
    plan = read_json_if_any(RunLayout(summary["run_dir"]).plan) or {}
    data = plan.get("validation", {}).get("data", {})
    files = data.get("data_files") or []
    profile = {"validation": "PASS" if (validation or {}).get("passed") else "FAIL"}
    if validation:
        profile.update({key: validation["data"][key] for key in ("train_rows", "eval_rows")})
    return {
        "name": Path(files[0]).name if files else (data.get("data_name") or "data"),
        "digest": summary["dataset_fingerprint"][:36],
        "source_type": "local" if files else "hugging_face",
        "source": json.dumps(
            {"uri": files[0] if len(files) == 1 else files}
            if files
            else {"path": data.get("data_name")}
        ),
        "profile": json.dumps(profile),
    }


def _stage_run(tracker: Tracker, parent: str, name: str, record: dict) -> str | None:
    client = tracker.client
    if name == "_parent":
        _log(tracker, parent, metrics=record["metrics"], tags=record["tags"])
        if record["dataset"]:
            _log_dataset(client, parent, record["dataset"])
        return None
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
    params = [Param(_key(k), _param(v)) for k, v in (params or {}).items() if v is not None]
    points = [Metric(_key(k), float(v), now, 0) for k, v in (metrics or {}).items() if _number(v)]
    points += [
        Metric(_key(k), float(v), now, int(step)) for k, v, step in history or [] if _number(v)
    ]
    tags = [RunTag(k, str(v)[:_MAX_PARAM]) for k, v in (tags or {}).items()]
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


def _predictions(path: Path) -> dict[str, list] | None:
    if not path.is_file():
        return None
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not rows:
        return None
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return {column: [_cell(row.get(column)) for row in rows] for column in columns}


def _cell(value: Any) -> Any:
    return (
        value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value)
    )


def _flat(values: dict, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in values.items()}


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:_MAX_PARAM]


def _key(name: str) -> str:
    """An MLflow key: letters, digits, ``_ - . /`` and spaces ("g[cpu-int4]" -> "g_cpu-int4")."""
    return _BAD_KEY.sub("_", str(name)).strip("_") or "_"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
