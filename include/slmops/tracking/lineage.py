"""What each stage read and wrote, for OpenLineage, as plain dicts.

The Airflow operators turn these into OpenLineage datasets and facets
(``slmops_airflow.lineage``); this module only reads the run folder, so it stays free of
Airflow and of the OpenLineage client. A dataset is ``{"namespace", "name"}`` plus,
where known, ``"version"`` (a data fingerprint, a model version) and ``"assertions"``
(data-quality checks: ``assertion``, ``success``, ``column``, ``actual``, ``expected``).
Files are namespace ``file`` with their absolute path as the name; a hub model or
dataset is namespace ``huggingface``; a published model is ``slmops://models`` / NAME,
the Airflow Asset ``slmops://models/NAME``.
"""

from __future__ import annotations

from pathlib import Path

from slmops.artifacts import read_json_if_any
from slmops.layout import RunLayout, TrainingLayout

FILE = "file"
HUB = "huggingface"
MODELS = "slmops://models"


def data_inputs(data: dict, fingerprint: str | None, checks: list[dict] | None = None) -> list:
    """The training data (a DataConfig slice): its files, or its hub dataset."""
    assertions = [_assertion(check) for check in checks or []]
    found = [_dataset(FILE, str(path)) for path in data.get("data_files") or []]
    if not found and data.get("data_name"):
        found = [_dataset(HUB, data["data_name"])]
    for dataset in found:
        if fingerprint:
            dataset["version"] = fingerprint
        if assertions:
            dataset["assertions"] = assertions
    return found


def model(name_or_path: str, version: str | None = None) -> dict:
    """A model folder (namespace file) or a hub model id (namespace huggingface)."""
    path = Path(str(name_or_path))
    dataset = _dataset(FILE, str(path)) if path.exists() else _dataset(HUB, str(name_or_path))
    if version:
        dataset["version"] = version
    return dataset


def validation(settings: dict, result: dict) -> dict:
    report = read_json_if_any(Path(settings["output_path"]) / "validation.json") or {}
    return {
        "inputs": data_inputs(settings["data"], result.get("fingerprint"), report.get("checks")),
        "outputs": [_dataset(FILE, str(Path(settings["output_path"]) / "validation.json"))],
        "run": {"validation": {"passed": result.get("passed"), "suite": report.get("suite")}},
    }


def finetune(settings: dict, result: dict) -> dict:
    layout = TrainingLayout(Path(settings["output_path"]))
    metrics = read_json_if_any(layout.metrics) or {}
    fingerprint = (metrics.get("dataset") or {}).get("fingerprint")
    outputs = [
        _dataset(FILE, str(folder)) for folder in (layout.adapter, layout.merged) if folder.is_dir()
    ]
    keys = ("method", "global_step", "final_train_loss", "best_eval_loss", "tokens_per_second")
    return {
        "inputs": [
            *data_inputs(_data_of(settings), fingerprint),
            model(settings["model_name_or_path"]),
        ],
        "outputs": outputs,
        "run": {
            "hyperparameters": metrics.get("config") or dict(settings),
            "training": {key: metrics.get(key) for key in keys},
        },
    }


def evaluation(settings: dict, result: dict) -> dict:
    layout = TrainingLayout(Path(settings["run_path"]))
    report = read_json_if_any(Path(result["output_path"]) / "evaluation.json") or {}
    models = [folder for folder in (layout.adapter, layout.merged) if folder.is_dir()]
    return {
        "inputs": [_dataset(FILE, str(folder)) for folder in models],
        "outputs": [_dataset(FILE, str(Path(result["output_path"]) / "evaluation.json"))],
        "run": {"gates": {"passed": report.get("passed"), "gates": report.get("gates", [])}},
    }


def optimize(settings: dict, result: dict) -> dict:
    layout = TrainingLayout(Path(settings["run_path"]))
    record = read_json_if_any(Path(result["output_path"]) / "export.json") or {}
    source = record.get("source_model") or str(layout.root)
    return {
        "inputs": [_dataset(FILE, source)],
        "outputs": [_dataset(FILE, result["output_path"])],
        "run": {
            "export": {key: result.get(key) for key in ("target", "passed", "size_mb")}
            | {"gates": record.get("gates", [])}
        },
    }


def publish(run_dir: Path, manifest: dict) -> dict:
    """Inputs: the training data and the exported targets; outputs: the published model
    (its Asset, versioned) and its version folder. A multi-adapter run's data is each
    adapter's (in their own folders), so only its shared export is named as input."""
    layout = RunLayout(run_dir)
    plan = read_json_if_any(layout.plan)
    version_dir = Path(manifest["path"])
    inputs = []
    if plan:
        inputs += data_inputs(plan["validation"]["data"], manifest.get("dataset_fingerprint"))
        inputs += [_dataset(FILE, str(layout.onnx(t))) for t in manifest.get("targets", {})]
    else:
        inputs += [_dataset(FILE, str(layout.multi / t)) for t in manifest.get("targets", {})]
    return {
        "inputs": inputs,
        "outputs": [
            {**_dataset(MODELS, manifest["name"]), "version": manifest["version"]},
            _dataset(FILE, str(version_dir)),
        ],
        "run": {
            "hyperparameters": manifest.get("config") or {},
            "gates": {"gates": manifest.get("gates", [])},
            "metrics": manifest.get("metrics") or {},
            "targets": {
                name: {**entry, "path": str(version_dir / entry["path"])}
                for name, entry in (manifest.get("targets") or {}).items()
            },
        },
    }


def _data_of(settings: dict) -> dict:
    return {key: settings.get(key) for key in ("data_files", "data_name")}


def _dataset(namespace: str, name: str) -> dict:
    return {"namespace": namespace, "name": name}


def _assertion(check: dict) -> dict:
    return {
        "assertion": check.get("expectation") or check["name"],
        "success": bool(check["passed"]),
        "column": check.get("column"),
        "actual": None if check.get("observed") is None else str(check["observed"]),
        "expected": None if check.get("threshold") is None else str(check["threshold"]),
    }
