"""DataWatchOperator: the first look and an unchanged file skip the task, a changed file
succeeds and puts its hashes on the data Asset's event; the state file remembers."""

from __future__ import annotations

import hashlib
import json

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from slmops_airflow.data_watch import DataWatchOperator

WATCHER = "slm_data_watch"
ASSET = Asset("slmops://data/tones")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def look(context, data_file="tones.jsonl"):
    """One check, as one run of the watcher DAG: (the result or the skip, outlet events)."""
    ctx = context(dag_id=WATCHER)
    operator = DataWatchOperator(task_id="watch", data_file=data_file)
    try:
        return operator.execute(ctx), ctx["outlet_events"]
    except AirflowSkipException as skipped:
        return skipped, ctx["outlet_events"]


def test_the_outlet_is_the_data_files_asset_by_its_stem():
    operator = DataWatchOperator(task_id="watch", data_file="sub/tones.jsonl")
    assert operator.outlets == [ASSET]
    other = DataWatchOperator(task_id="w2", data_file="x.csv", outlets=[Asset("s3://b/x")])
    assert other.outlets == [Asset("s3://b/x")]


def test_first_look_records_the_file_and_skips(roots, context):
    path = roots.data / "tones.jsonl"
    skipped, events = look(context)
    assert isinstance(skipped, AirflowSkipException)
    assert str(skipped) == f"{path}: first look, recorded {sha256(path)[:12]}"
    assert len(events) == 0  # nothing was emitted
    state = json.loads((roots.artifacts / "data_watch" / f"{WATCHER}.json").read_text())
    assert list(state) == [str(path)]
    assert state[str(path)]["sha256"] == sha256(path)


def test_an_unchanged_file_skips(roots, context):
    path = roots.data / "tones.jsonl"
    look(context)
    skipped, events = look(context)
    assert isinstance(skipped, AirflowSkipException)
    assert str(skipped) == f"{path}: unchanged ({sha256(path)[:12]})"
    assert len(events) == 0


def test_a_changed_file_emits_the_assets_event_with_both_hashes(roots, context):
    path = roots.data / "tones.jsonl"
    look(context)
    before = sha256(path)
    with path.open("a") as rows:
        rows.write(json.dumps({"phrase": "The parcel finally arrived.", "tone": "joyful"}) + "\n")
    seen, events = look(context)
    assert seen["changed"] is True and seen["first_seen"] is False
    assert (seen["previous_sha256"], seen["sha256"]) == (before, sha256(path))
    assert seen["size_bytes"] == path.stat().st_size
    assert events[ASSET].extra == {
        "path": str(path),
        "sha256": sha256(path),
        "previous_sha256": before,
        "size_bytes": path.stat().st_size,
    }
    skipped, _ = look(context)  # reported once: the next look sees no change
    assert "unchanged" in str(skipped)


def test_each_watcher_keeps_its_own_state(roots, context):
    look(context)
    other = DataWatchOperator(task_id="watch", data_file="tones.jsonl")
    with pytest.raises(AirflowSkipException, match="first look"):
        other.execute(context(dag_id="another_watcher"))
    assert sorted(p.name for p in (roots.artifacts / "data_watch").iterdir()) == [
        "another_watcher.json",
        f"{WATCHER}.json",
    ]


@pytest.mark.parametrize(
    ("data_file", "message"),
    [
        ("/etc/passwd", "param data_file: /etc/passwd is outside the data roots"),
        ("../../etc/passwd", "param data_file: ../../etc/passwd is outside the data roots"),
        ("gone.jsonl", "param data_file: gone.jsonl does not exist"),
    ],
)
def test_a_file_outside_the_roots_or_missing_fails_and_records_nothing(
    roots, context, data_file, message
):
    with pytest.raises(AirflowFailException, match=message.replace(".", r"\.")):
        look(context, data_file)
    assert not (roots.artifacts / "data_watch").exists()


def test_data_file_is_templated(roots, context):
    operator = DataWatchOperator(task_id="watch", data_file="{{ params.watched }}")
    assert tuple(operator.template_fields) == ("data_file",)
    ctx = context(dag_id=WATCHER, params={"watched": "tones.jsonl"})
    operator.render_template_fields(ctx)
    assert operator.data_file == "tones.jsonl"
    with pytest.raises(AirflowSkipException, match="first look"):
        operator.execute(ctx)
