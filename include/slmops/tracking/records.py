"""What a pipeline run's MLflow runs hold, read from the run folder's files.

``stage_records`` gives each stage with a result as ``{"passed", "params", "metrics",
"tags", "files", "history", "table"}`` (what its nested run logs); ``run_record`` the
pipeline run's own metrics, tags and training dataset. No MLflow import here:
``slmops.tracking.runs`` does the logging.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from slmops.artifacts import read_json_if_any
from slmops.layout import EVALUATION_NAME, GATES_NAME, RunLayout

TAG_PREFIX = "slmops."
PREDICTIONS_NAME = "predictions.jsonl"  # written by slmops.evaluation.report
MAX_TEXT = 6000  # MLflow's limit on a parameter's or tag's value
_TARGET_FILES = ("export.json", "parity.json", "benchmark.json")
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]+")


def stage_records(run_dir: Path, summary: dict) -> dict[str, dict]:
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
    return records


def run_record(run_dir: Path, summary: dict) -> dict:
    """The pipeline run's own numbers and outcome, and its training data as a dataset."""
    validation = read_json_if_any(RunLayout(run_dir).validation_report)
    metrics = {"passed": float(summary["passed"])}
    overall = summary.get("evaluation")
    if overall:
        primary = overall["primary_metric"]
        metrics.update(
            {f"base.{primary}": overall["base"], f"fine_tuned.{primary}": overall["fine_tuned"]}
        )
    return {
        "metrics": metrics,
        "tags": {f"{TAG_PREFIX}outcome": "PASS" if summary["passed"] else "FAIL"},
        "dataset": _dataset(summary, validation),
    }


def _validation(layout: RunLayout, report: dict) -> dict:
    failed = [check["name"] for check in report["checks"] if not check["passed"]]
    return {
        "passed": report["passed"],
        "params": {"suite": report.get("suite"), **flat(report["data"], "data.")},
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
        "params": flat(metrics.get("config") or {}),
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
        key = metric_key(gate["name"])
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
        values[f"gate.{metric_key(gate['name'])}.observed"] = gate.get("observed")
        values[f"gate.{metric_key(gate['name'])}.passed"] = float(gate["passed"])
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
            f"{TAG_PREFIX}reason": decision["reason"][:MAX_TEXT],
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
        profile["failed_checks"] = [c["name"] for c in validation["checks"] if not c["passed"]]
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


def flat(values: dict, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in values.items()}


def metric_key(name: str) -> str:
    """An MLflow key: letters, digits, ``_ - . /`` and spaces ("g[cpu-int4]" -> "g_cpu-int4")."""
    return _BAD_KEY.sub("_", str(name)).strip("_") or "_"


def quoted(text: str) -> str:
    """``text`` inside a single-quoted MLflow search-filter value."""
    return text.replace("'", "\\'")
