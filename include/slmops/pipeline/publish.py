"""Publish a finished run: its ONNX targets, adapter and report as a model version.

A version folder in the model store (``slmops.layout.ModelStore``) holds the files and
a manifest (base model, dataset fingerprint, settings, metrics, gate results, targets,
pinned sources, every file's sha256); the model's latest pointer names the newest
version. The files are copies (a reflink where the file system has them), made
read-only, so an edit in the run folder never changes what was published.

Everything runs under the model's lock (``model_versions.model_lock``): when the model's
latest version is not the one this run was challenged against (another run or another
DAG published meanwhile), or another DAG's version is latest and this run was not
challenged at all, the challenge is run again first. Publishing a run again replaces its
own version, whole, keeps its sequence number, and never takes latest back.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import time
from pathlib import Path

from slmops import __version__
from slmops.artifacts import atomic_directory, atomic_write_json, ensure_free_space, tree_size
from slmops.errors import NotPromoted, PublishError
from slmops.layout import ADAPTER, ONNX_FOLDER, REPORT_FILES, ModelStore, RunLayout
from slmops.pipeline import approval, champion, model_versions
from slmops.pipeline.champion import KEEP, read_decision
from slmops.pipeline.plan import read_plan
from slmops.pipeline.summary import collect
from slmops.progress import Log, no_log

URI_SCHEME = "slmops://models/"
DATA_URI_SCHEME = "slmops://data/"


def asset_uri(name: str) -> str:
    return f"{URI_SCHEME}{name}"


def data_asset_uri(data_file: str) -> str:
    """The Asset of a training data file (by its stem): an event on it starts the DAGs
    that retrain on that data."""
    return f"{DATA_URI_SCHEME}{Path(data_file).stem}"


def publish(run_dir: Path, models_root: Path, *, log: Log = no_log) -> dict:
    """Publish the run; returns the manifest (with "latest": the model's latest version
    afterwards). Refuses a run whose gates did not all pass (PublishError), and one the
    champion or a reviewer kept out (NotPromoted)."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    summary = collect(run_dir)
    if not summary["passed"]:
        failed = [stage for stage, state in summary["stages"].items() if state != "PASS"]
        raise PublishError(
            f"run {plan['run_id']} is not published: {', '.join(failed)} did not pass "
            f"(see {plan['report_dir']}/report.html)"
        )
    rejected = approval.refusal(run_dir)
    if rejected:
        raise NotPromoted(f"run {plan['run_id']} is not published: {rejected}")
    kept = read_decision(run_dir)
    if kept and kept["decision"] == KEEP:  # a kept run stays out (challenge it again to change)
        raise NotPromoted(f"run {plan['run_id']} is not published: {kept['reason']}")
    name = plan["model_name"]
    store = ModelStore(models_root)
    final = store.version(name, model_versions.version_name(plan["dag_id"], plan["run_id"]))
    trees = {f"{ONNX_FOLDER}/{target}": Path(r["path"]) for target, r in summary["targets"].items()}
    adapter = RunLayout(run_dir).finetune.adapter
    if adapter.is_dir():
        trees[ADAPTER] = adapter
    with model_versions.model_lock(store, name):
        decision = _decision_against_latest(run_dir, plan, store, final.name, log)
        if decision and decision["decision"] == KEEP:
            raise NotPromoted(f"run {plan['run_id']} is not published: {decision['reason']}")
        manifest = _manifest(plan, summary, final, decision)
        return write_version(store, final, trees, Path(plan["report_dir"]), manifest, log=log)


def _decision_against_latest(
    run_dir: Path, plan: dict, store: ModelStore, version: str, log: Log
) -> dict | None:
    """The champion / challenger decision that holds now (under the lock): the run's own
    when it was made against today's latest version (or this run is the latest already:
    a retried publish); made again when the latest moved since, or when another DAG's
    version is latest and the run was never challenged."""
    decision = read_decision(run_dir)
    latest = store.latest_named(plan["model_name"])
    latest_name = latest.name if latest is not None else None
    if decision is not None:
        challenged = (decision.get("champion") or {}).get("version")
        if challenged == latest_name or latest_name == version:
            return decision
        log(
            f"the latest version of {plan['model_name']} is now {latest_name}, not "
            f"{challenged} that this run was challenged against: challenging again"
        )
        return champion.challenge(run_dir, log=log)
    if latest is None:
        return None
    owner = (model_versions.read_manifest(latest) or {}).get("dag_id")
    if owner == plan["dag_id"]:
        return None
    log(
        f"{plan['model_name']}'s latest version {latest_name} was published by "
        f"{owner or 'an unknown DAG'}, not {plan['dag_id']}: challenging it first"
    )
    return champion.challenge(run_dir, log=log)


def write_version(
    store: ModelStore,
    final: Path,
    trees: dict[str, Path],
    report_dir: Path,
    manifest: dict,
    *,
    log: Log = no_log,
) -> dict:
    """Write the version folder whole (``trees``: folder in the version -> run folder to
    copy, the run's report, the manifest with every file's sha256), then make it the
    model's latest version unless a newer one is. Call under ``model_lock``; returns the
    manifest with "latest" added."""
    name = final.parent.parent.name
    sequence = model_versions.sequence_of(final) or model_versions.next_sequence(store, name)
    manifest = {**manifest, "sequence": sequence}
    reports = [report_dir / report for report in REPORT_FILES if (report_dir / report).is_file()]
    needed = sum(tree_size(source) for source in trees.values())
    needed += sum(report.stat().st_size for report in reports)
    ensure_free_space(final.parent, needed, what=f"version {final.name} of {name}")
    with atomic_directory(final) as folder:
        for relative, source in trees.items():
            copy_tree(source, folder / relative)
        for report in reports:
            _copy_file(report, folder / report.name)
        manifest["files"] = model_versions.checksums(folder)
        atomic_write_json(ModelStore.manifest(folder), manifest)
    latest = model_versions.advance_latest(store, name, final, manifest)
    if latest != final.name:
        log(
            f"{name} version {final.name} (number {sequence}) is written, but the latest "
            f"stays {latest}: it was published after this run"
        )
    return {**manifest, "latest": latest}


def _manifest(plan: dict, summary: dict, final: Path, decision: dict | None) -> dict:
    evaluation = summary["evaluation"]
    manifest = {
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
        "champion_challenger": decision,
        "slmops_version": __version__,
    }
    if plan.get("sources"):
        manifest["sources"] = plan["sources"]  # hub ids with their pinned revisions
    return manifest


def copy_tree(source: Path, destination: Path) -> None:
    """Read-only copies of ``source``'s files (reflinks where the file system has them):
    the published files share no inode with the run folder."""
    shutil.copytree(source, destination, copy_function=_copy_file)


_FICLONE = 0x40049409  # linux/fs.h: share the blocks copy-on-write (btrfs, xfs)


def _copy_file(source: str | Path, destination: str | Path) -> None:
    with open(source, "rb") as reader, open(destination, "wb") as writer:
        try:
            fcntl.ioctl(writer.fileno(), _FICLONE, reader.fileno())
        except OSError:  # no reflinks here: a real copy
            shutil.copyfileobj(reader, writer, 4 * 1024 * 1024)
    shutil.copystat(source, destination)
    mode = os.stat(destination).st_mode
    os.chmod(destination, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
