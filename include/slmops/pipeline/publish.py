"""Publish a finished run: its ONNX targets, adapter and report as a model version.

A version folder in the model store (``slmops.layout.ModelStore``) holds the files and
a manifest (base model, dataset fingerprint, settings, metrics, gate results, targets);
the model's latest pointer names the newest version. Files are hard-linked from the run
folder when the two share a disk (no copy of the weights), copied otherwise. Publishing a
run again replaces its own version, whole, and nothing else.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from slmops import __version__
from slmops.artifacts import atomic_directory, atomic_write_json
from slmops.errors import NotPromoted, PublishError
from slmops.layout import ADAPTER, ONNX_FOLDER, REPORT_FILES, ModelStore, RunLayout
from slmops.pipeline import approval, locations
from slmops.pipeline.champion import KEEP, read_decision
from slmops.pipeline.plan import read_plan
from slmops.pipeline.summary import collect

URI_SCHEME = "slmops://models/"
DATA_URI_SCHEME = "slmops://data/"


def asset_uri(name: str) -> str:
    return f"{URI_SCHEME}{name}"


def data_asset_uri(data_file: str) -> str:
    """The Asset of a training data file (by its stem): an event on it starts the DAGs
    that retrain on that data."""
    return f"{DATA_URI_SCHEME}{Path(data_file).stem}"


def publish(run_dir: Path, models_root: Path) -> dict:
    """Publish the run; returns the manifest. Refuses a run whose gates did not all pass."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    summary = collect(run_dir)
    if not summary["passed"]:
        failed = [stage for stage, state in summary["stages"].items() if state != "PASS"]
        raise PublishError(
            f"run {plan['run_id']} is not published: {', '.join(failed)} did not pass "
            f"(see {plan['report_dir']}/report.html)"
        )
    decision = read_decision(run_dir)
    if decision and decision["decision"] == KEEP:
        raise NotPromoted(f"run {plan['run_id']} is not published: {decision['reason']}")
    rejected = approval.refusal(run_dir)
    if rejected:
        raise NotPromoted(f"run {plan['run_id']} is not published: {rejected}")
    name = plan["model_name"]
    version = locations.safe_name(plan["run_id"])
    final = ModelStore(models_root).version(name, version)
    trees = {f"{ONNX_FOLDER}/{target}": Path(r["path"]) for target, r in summary["targets"].items()}
    adapter = RunLayout(run_dir).finetune.adapter
    if adapter.is_dir():
        trees[ADAPTER] = adapter
    manifest = _manifest(plan, summary, final)
    write_version(final, trees, Path(plan["report_dir"]), manifest)
    return manifest


def write_version(final: Path, trees: dict[str, Path], report_dir: Path, manifest: dict) -> None:
    """Write the version folder whole (``trees``: folder in the version -> run folder to
    link, the run's report, the manifest), then make it the model's latest version."""
    with atomic_directory(final) as folder:
        for relative, source in trees.items():
            link_tree(source, folder / relative)
        for report in REPORT_FILES:
            if (report_dir / report).is_file():
                shutil.copy2(report_dir / report, folder / report)
        atomic_write_json(ModelStore.manifest(folder), manifest)
    atomic_write_json(
        ModelStore.latest_of(final),
        {"version": final.name, "path": str(final), "published_at": manifest["published_at"]},
    )


def _manifest(plan: dict, summary: dict, final: Path) -> dict:
    evaluation = summary["evaluation"]
    return {
        "uri": asset_uri(plan["model_name"]),
        "name": plan["model_name"],
        "version": final.name,
        "path": str(final),
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dag_id": plan["dag_id"],
        "run_id": plan["run_id"],
        "base_model": summary["base_model"],
        "dataset_fingerprint": summary["dataset_fingerprint"],
        "config": plan["params"],
        "training": summary["training"],
        "metrics": {
            "primary_metric": evaluation["primary_metric"],
            "base": evaluation["base"],
            "fine_tuned": evaluation["fine_tuned"],
        },
        "gates": evaluation["gates"]
        + [gate for record in summary["targets"].values() for gate in record["gates"]],
        "targets": {
            target: {
                "path": f"{ONNX_FOLDER}/{target}",
                **{key: record[key] for key in ("size_mb", "metric", "decode_tokens_per_s")},
            }
            for target, record in summary["targets"].items()
        },
        "champion_challenger": read_decision(Path(plan["run_dir"])),
        "slmops_version": __version__,
    }


def link_tree(source: Path, destination: Path) -> None:
    """Hard links of ``source``'s files (copies across file systems)."""
    shutil.copytree(source, destination, copy_function=_link_or_copy)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, destination)
