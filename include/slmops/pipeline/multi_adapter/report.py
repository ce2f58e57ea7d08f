"""A multi-adapter run's outcome, report and published version: each adapter's stages
and metrics side by side, the shared base with its adapters as one model version."""

from __future__ import annotations

import time
from pathlib import Path

from slmops.artifacts import read_json_if_any
from slmops.errors import PublishError
from slmops.layout import MULTI_DIR, ModelStore, RunLayout
from slmops.pipeline import model_versions
from slmops.pipeline.multi_adapter.plan import read_multi_plan
from slmops.pipeline.publish import asset_uri, write_version
from slmops.pipeline.summary import NO_RESULT, write_report
from slmops.report import Document, cell, verdict


def collect(run_dir: Path) -> dict:
    """The multi-adapter run's outcome: each adapter's stages and metrics."""
    run_dir = Path(run_dir)
    multi = read_multi_plan(run_dir)
    scores = read_json_if_any(RunLayout(run_dir).multi_scores)
    adapters = {}
    for adapter in multi["adapters"]:
        evaluation = read_json_if_any(RunLayout(adapter["run_dir"]).finetune.evaluation_report)
        primary = evaluation["primary_metric"] if evaluation else None
        models = (evaluation or {}).get("models", {})
        through = (scores or {}).get("adapters", {}).get(adapter["name"], {})
        adapters[adapter["name"]] = {
            "data_files": adapter["data_files"],
            "evaluation": NO_RESULT if evaluation is None else verdict(evaluation["passed"]),
            "primary_metric": primary,
            "base": models.get("base", {}).get("metrics", {}).get(primary),
            "fine_tuned": models.get("fine_tuned", {}).get("metrics", {}).get(primary),
            "shared_base": through.get("metric"),
            "same_answer_as": through.get("same_answer_as"),
            "samples": through.get("samples", []),
        }
    stages = {f"evaluation[{name}]": entry["evaluation"] for name, entry in adapters.items()}
    stages[f"multi_adapter[{multi['target']}]"] = NO_RESULT if scores is None else "PASS"
    store = ModelStore(multi["models_root"])
    version = model_versions.version_name(multi["dag_id"], multi["run_id"])
    published = store.version(multi["model_name"], version)
    return {
        "dag_id": multi["dag_id"],
        "run_id": multi["run_id"],
        "model_name": multi["model_name"],
        "run_dir": str(run_dir),
        "base_model": multi["base_model"],
        "passed": all(state == "PASS" for state in stages.values()),
        "stages": stages,
        "adapters": adapters,
        "multi_adapter": scores and {k: scores[k] for k in ("target", "path", "size_mb")},
        "published": str(published) if published.is_dir() else None,
    }


def document(summary: dict) -> Document:
    doc = Document(f"{summary['dag_id']} {summary['model_name']}: run {summary['run_id']}")
    doc.paragraph(
        f"Outcome: {verdict(summary['passed'])}. {len(summary['adapters'])} LoRA adapters of "
        f"{summary['base_model']}, switched per request on one shared ONNX base."
    )
    doc.table(["stage", "outcome"], list(summary["stages"].items()))
    doc.heading("Adapters through the shared base")
    rows = [
        [
            name,
            ", ".join(Path(path).name for path in entry["data_files"] or []),
            entry["primary_metric"],
            entry["base"],
            entry["fine_tuned"],
            entry["shared_base"],
        ]
        for name, entry in summary["adapters"].items()
    ]
    headers = ["adapter", "data", "metric", "base", "fine-tuned (PyTorch)", "shared ONNX base"]
    doc.table(headers, rows)
    if summary["multi_adapter"]:
        multi = summary["multi_adapter"]
        doc.paragraph(f"{multi['target']} base and adapters: {cell(multi['size_mb'])} MB.")
    for name, entry in summary["adapters"].items():
        if entry["samples"]:
            doc.heading(f"Sample answers: {name}'s eval rows")
            others = [other for other in summary["adapters"] if other != name]
            doc.table(
                ["prompt", name, *others],
                [
                    [row["prompt"][-80:], row[name], *(row.get(o) for o in others)]
                    for row in entry["samples"]
                ],
            )
    return doc


def write(run_dir: Path, output_dir: Path) -> dict:
    summary = collect(run_dir)
    write_report(summary, document(summary), output_dir)
    return summary


def publish(run_dir: Path, models_root: Path) -> dict:
    """A new version in the model store: the shared base and its adapters, the report and a
    manifest with each adapter's metrics; under the model's lock, it becomes the model's
    latest version unless a newer one is (no champion / challenger for these runs)."""
    multi = read_multi_plan(run_dir)
    summary = collect(run_dir)
    if not summary["passed"]:
        failed = [stage for stage, state in summary["stages"].items() if state != "PASS"]
        raise PublishError(f"run {multi['run_id']} is not published: {', '.join(failed)} failed")
    store = ModelStore(models_root)
    version = model_versions.version_name(multi["dag_id"], multi["run_id"])
    final = store.version(multi["model_name"], version)
    target = multi["target"]
    manifest = {
        "uri": asset_uri(multi["model_name"]),
        "name": multi["model_name"],
        "version": final.name,
        "path": str(final),
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dag_id": multi["dag_id"],
        "run_id": multi["run_id"],
        "base_model": multi["base_model"],
        "dataset_fingerprint": None,  # one per adapter, in each adapter's run folder
        "config": multi["params"],
        "metrics": {
            "adapters": {
                name: {key: entry[key] for key in ("primary_metric", "base", "shared_base")}
                for name, entry in summary["adapters"].items()
            }
        },
        "targets": {target: {"path": f"{MULTI_DIR}/{target}", **summary["multi_adapter"]}},
    }
    if multi.get("sources"):
        manifest["sources"] = multi["sources"]  # hub ids with their pinned revisions
    trees = {f"{MULTI_DIR}/{target}": RunLayout(run_dir).multi / target}
    with model_versions.model_lock(store, multi["model_name"]):
        return write_version(store, final, trees, Path(multi["report_dir"]), manifest)
