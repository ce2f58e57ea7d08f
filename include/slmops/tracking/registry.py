"""The model registry: MLflow registered models mirroring the file-based model store.

The store under the artifacts root (``slmops.layout.ModelStore``) is the source of
truth and works without MLflow. After every publish decision the registry is brought in
line with it: each published version is a registered model version (its files logged
as the version's artifacts, tagged with the store's version name, base model, data
fingerprint, gates and run id), alias ``champion`` is the version the store's
latest.json names, and alias ``challenger`` the candidate that a champion/challenger
run kept out (registered, tagged unpublished). A version the registry missed (the
tracker was down when it was published) is registered on the next sync.
"""

from __future__ import annotations

import json
from pathlib import Path

from slmops.artifacts import read_json_if_any
from slmops.layout import ADAPTER, ONNX_FOLDER, REPORT_FILES, ModelStore, RunLayout
from slmops.progress import Log, no_log
from slmops.tracking.client import Tracker, Unavailable, open_tracker
from slmops.tracking.records import TAG_PREFIX, quoted
from slmops.tracking.runs import tracked_status
from slmops.tracking.settings import TrackingSettings

CHAMPION = "champion"
CHALLENGER = "challenger"
VERSION_TAG = f"{TAG_PREFIX}version"
PUBLISHED_TAG = f"{TAG_PREFIX}published"
MODEL_ARTIFACTS = "model"
PUBLISHED, KEPT_OUT, REFUSED = "published", "kept_out", "refused"


def register(
    run_dir: Path,
    settings: TrackingSettings,
    *,
    version: str,
    outcome: str,
    log: Log = no_log,
) -> dict | None:
    """Sync the registry with the model store after the publish decision on ``run_dir``,
    whose version in the store is (or would be) ``version``. ``outcome``: "published",
    "kept_out" (its candidate lost to the champion: it becomes ``challenger``) or
    "refused" (it did not pass). Returns the model's aliases and this run's registered
    version, or None without a tracker."""
    run_dir = Path(run_dir)
    plan = read_json_if_any(RunLayout(run_dir).plan)
    if not plan:
        return None
    name = plan["model_name"]
    store = ModelStore(plan["models_root"])
    published = _published_versions(store, name)
    if not published and outcome != KEPT_OUT:  # nothing to mirror: no empty model
        return None
    tracker = open_tracker(settings, log)
    if isinstance(tracker, Unavailable):
        return None
    result = None
    with tracker.safely(f"registering {name}"):
        _ensure_model(tracker.client, name)
        parent = (tracked_status(run_dir, settings) or {}).get("run_id")
        for version_dir in published:
            own = version_dir.name == version
            _ensure_version(tracker, name, version_dir, parent if own else None)
        candidate = None
        if outcome == KEPT_OUT:
            candidate = _ensure_candidate(tracker, name, run_dir, plan, version, parent)
        aliases = _sync_aliases(tracker.client, name, store, candidate, outcome == PUBLISHED)
        mine = _find(tracker.client, name, version)
        result = {"model": name, "version": mine and str(mine.version), "aliases": aliases}
        log(f"registry: {name} " + ", ".join(f"{k} = version {v}" for k, v in aliases.items()))
    return result


def aliases_of(client, name: str) -> dict[str, str]:
    aliases = client.get_registered_model(name).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def _ensure_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description=f"slmops model {name}: published versions of its pipeline"
            )
        except MlflowException:  # created by another task meanwhile
            client.get_registered_model(name)


def _published_versions(store: ModelStore, name: str) -> list[Path]:
    """The store's whole versions of ``name``, oldest first."""
    folder = store.versions(name)
    manifests = {
        version: read_json_if_any(ModelStore.manifest(version))
        for version in (folder.iterdir() if folder.is_dir() else ())
        if not version.name.startswith(".")  # a version being written, or a killed write's
    }
    whole = {version: manifest for version, manifest in manifests.items() if manifest}
    return sorted(
        whole,
        key=lambda version: (
            whole[version].get("sequence") or 0,  # the store's publish order (0: older stores)
            whole[version].get("published_at", ""),
            version.name,
        ),
    )


def _find(client, name: str, version: str):
    found = client.search_model_versions(
        f"name = '{quoted(name)}' and tags.`{VERSION_TAG}` = '{quoted(version)}'"
    )
    return max(found, key=lambda entry: int(entry.version)) if found else None


def _ensure_version(tracker: Tracker, name: str, version_dir: Path, parent: str | None):
    existing = _find(tracker.client, name, version_dir.name)
    manifest = read_json_if_any(ModelStore.manifest(version_dir))
    tags = {**_manifest_tags(manifest), PUBLISHED_TAG: "true"}
    if existing is not None:
        if existing.tags.get(PUBLISHED_TAG) != "true":  # a kept-out candidate, published now
            for key, value in tags.items():
                tracker.client.set_model_version_tag(name, existing.version, key, value)
        return existing
    trees = {"": version_dir}
    return _create_version(tracker, name, trees, [], tags, parent, manifest.get("run_id"))


def _ensure_candidate(
    tracker: Tracker, name: str, run_dir: Path, plan: dict, version: str, parent: str | None
):
    """Register the run's kept-out candidate: its passed targets, adapter and report."""
    existing = _find(tracker.client, name, version)
    if existing is not None:
        return existing
    layout = RunLayout(run_dir)
    summary = read_json_if_any(layout.summary) or {}
    trees = {
        f"{ONNX_FOLDER}/{target}": Path(record["path"])
        for target, record in (summary.get("targets") or {}).items()
        if record.get("passed")
    }
    if layout.finetune.adapter.is_dir():
        trees[ADAPTER] = layout.finetune.adapter
    files = [layout.report / report for report in REPORT_FILES]
    decision = read_json_if_any(layout.decision) or {}
    tags = {
        VERSION_TAG: version,
        f"{TAG_PREFIX}run_id": plan["run_id"],
        f"{TAG_PREFIX}dag_id": plan["dag_id"],
        f"{TAG_PREFIX}dataset_fingerprint": summary.get("dataset_fingerprint") or "",
        f"{TAG_PREFIX}decision": decision.get("decision", "keep"),
        f"{TAG_PREFIX}reason": (decision.get("reason") or "")[:5000],
        PUBLISHED_TAG: "false",
    }
    return _create_version(tracker, name, trees, files, tags, parent, plan["run_id"])


def _create_version(tracker, name, trees, files, tags, parent, run_label):
    """Log the files to a "publish" run (nested in the pipeline's run when there is one)
    and register them as a new version of ``name``."""
    client = tracker.client
    run_tags = {f"{TAG_PREFIX}stage": "publish", VERSION_TAG: tags[VERSION_TAG]}
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    run_name = f"publish {name} {run_label}"
    run = client.create_run(tracker.experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    for relative, folder in trees.items():
        if Path(folder).is_dir():
            path = f"{MODEL_ARTIFACTS}/{relative}" if relative else MODEL_ARTIFACTS
            client.log_artifacts(run_id, str(folder), path.rstrip("/"))
    for file in files:
        if Path(file).is_file():
            client.log_artifact(run_id, str(file), MODEL_ARTIFACTS)
    client.set_terminated(run_id)
    return client.create_model_version(
        name,
        source=f"runs:/{run_id}/{MODEL_ARTIFACTS}",
        run_id=run_id,
        tags=tags,
        description=f"{name} {tags[VERSION_TAG]} (slmops)",
    )


def _manifest_tags(manifest: dict) -> dict[str, str]:
    metrics = manifest.get("metrics") or {}
    verdicts = {True: "PASS", False: "FAIL"}
    gates = ", ".join(f"{g['name']}={verdicts[g['passed']]}" for g in manifest.get("gates", []))
    return {
        VERSION_TAG: manifest["version"],
        f"{TAG_PREFIX}run_id": manifest.get("run_id", ""),
        f"{TAG_PREFIX}dag_id": manifest.get("dag_id", ""),
        f"{TAG_PREFIX}base_model": str(manifest.get("base_model", "")),
        f"{TAG_PREFIX}dataset_fingerprint": manifest.get("dataset_fingerprint") or "",
        f"{TAG_PREFIX}gates": gates[:5000],
        f"{TAG_PREFIX}metrics": json.dumps(metrics, sort_keys=True)[:5000],
        f"{TAG_PREFIX}targets": ", ".join(sorted(manifest.get("targets") or {})),
    }


def _sync_aliases(client, name: str, store: ModelStore, candidate, promoted: bool) -> dict:
    """``champion`` = the store's latest version; ``challenger`` = this run's kept-out
    candidate, and gone once a run is promoted."""
    latest = store.latest_version(name)
    champion = _find(client, name, latest.name) if latest else None
    if champion is not None:
        client.set_registered_model_alias(name, CHAMPION, champion.version)
    elif CHAMPION in client.get_registered_model(name).aliases:
        client.delete_registered_model_alias(name, CHAMPION)
    if candidate is not None:
        client.set_registered_model_alias(name, CHALLENGER, candidate.version)
    elif promoted and CHALLENGER in client.get_registered_model(name).aliases:
        client.delete_registered_model_alias(name, CHALLENGER)
    return aliases_of(client, name)
