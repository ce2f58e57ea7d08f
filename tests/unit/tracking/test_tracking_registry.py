"""The MLflow registry follows the model store: promote, keep, a failed publish, backfill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tracked_runs import client_for, clone_run, closed_port

from slmops.errors import NotPromoted, PublishError
from slmops.pipeline import stages
from slmops.pipeline.model_versions import version_name
from slmops.pipeline.plan import read_plan


def _registry(client, name="tiny-tones") -> dict[str, tuple[str, str]]:
    aliases = client.get_registered_model(name).aliases
    versions = {alias: client.get_model_version(name, v) for alias, v in aliases.items()}
    return {a: (v.tags["slmops.version"], v.tags["slmops.published"]) for a, v in versions.items()}


def _latest(root) -> str:
    return json.loads((root / "models" / "tiny-tones" / "latest.json").read_text())["version"]


def _version(run) -> str:
    """The run's version name in the store (and the registry's slmops.version tag)."""
    plan = read_plan(run)
    return version_name(plan["dag_id"], plan["run_id"])


def _decide(run, decision: str) -> None:
    (run / "champion").mkdir(exist_ok=True)
    record = {"decision": decision, "reason": f"the test says {decision}", "run_id": run.name}
    latest = Path(read_plan(run)["models_root"]) / "tiny-tones" / "latest.json"
    if latest.is_file():  # decided against today's champion, so publish takes it as it is
        record["champion"] = {"version": json.loads(latest.read_text())["version"]}
    (run / "champion" / "decision.json").write_text(json.dumps(record))


def test_aliases_follow_latest_json_after_keep_promote_and_a_failed_publish(
    tracked_root, tracking_on, tmp_path
):
    root = tmp_path / "artifacts"
    first = clone_run(tracked_root, "manual__1", into=root)
    stages.report(first)
    stages.publish(first, root / "models")
    client = client_for(root)
    v1 = _version(first)
    assert _registry(client) == {"champion": (v1, "true")} and _latest(root) == v1

    kept = clone_run(tracked_root, "manual__2", into=root)
    _decide(kept, "keep")
    stages.report(kept)
    with pytest.raises(NotPromoted):
        stages.publish(kept, root / "models")
    v2 = _version(kept)
    assert _latest(root) == v1
    assert _registry(client) == {"champion": (v1, "true"), "challenger": (v2, "false")}
    candidate = client.get_model_version(
        "tiny-tones", client.get_registered_model("tiny-tones").aliases["challenger"]
    )
    files = {entry.path for entry in client.list_artifacts(candidate.run_id, "model")}
    assert {"model/onnx", "model/report.html"} <= files

    failed = clone_run(tracked_root, "manual__3", into=root)
    evaluation = failed / "finetune" / "evaluation" / "evaluation.json"
    record = json.loads(evaluation.read_text())
    evaluation.write_text(json.dumps({**record, "passed": False}))  # a gate failed
    stages.report(failed)
    with pytest.raises(PublishError):
        stages.publish(failed, root / "models")
    assert _latest(root) == v1
    assert _registry(client)["champion"] == (v1, "true")
    registered = {
        v.tags["slmops.version"] for v in client.search_model_versions("name = 'tiny-tones'")
    }
    assert registered == {v1, v2}  # nothing of the refused run

    _decide(kept, "promote")  # the kept-out candidate wins a later challenge
    manifest = stages.publish(kept, root / "models")
    assert _latest(root) == v2
    assert manifest["registry"]["aliases"] == {"champion": manifest["registry"]["version"]}
    assert _registry(client) == {"champion": (v2, "true")}  # challenger gone


def test_a_version_published_while_the_tracker_was_down_is_registered_on_the_next_publish(
    tracked_root, tracking_on, tmp_path
):
    root = tmp_path / "artifacts"
    down = f"http://127.0.0.1:{closed_port()}"
    offline = clone_run(tracked_root, "offline", into=root)
    stages.report(offline, tracking_uri=down)
    assert stages.publish(offline, root / "models", tracking_uri=down)["registry"] is None

    online = clone_run(tracked_root, "online", into=root)
    stages.report(online)
    registry = stages.publish(online, root / "models")["registry"]
    client = client_for(root)
    versions = {
        str(v.version): v.tags["slmops.version"]
        for v in client.search_model_versions("name = 'tiny-tones'")
    }
    assert sorted(versions.values()) == sorted([_version(offline), _version(online)])
    assert versions[registry["aliases"]["champion"]] == _version(online) == _latest(root)
