"""DataWatchOperator: the first look and an unchanged file skip the task, a changed file
succeeds and puts its hashes on the data Asset's event; RecordDataLookOperator then
remembers the new hash, in one state file per watcher and watched file."""

from __future__ import annotations

import hashlib
import json

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from slmops.pipeline.data_watch import legacy_state_path, state_path
from slmops_airflow.data_watch import DataWatchOperator, RecordDataLookOperator

WATCHER = "slm_data_watch"
ASSET = Asset("slmops://data/tones")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def look(context, data_file="tones.jsonl", *, recorded=True, dag_id=WATCHER):
    """One run of the watcher DAG: the check, then (when it succeeded and ``recorded``)
    the record task. Returns (the check's result or its skip, its outlet events)."""
    ctx = context(dag_id=dag_id)
    operator = DataWatchOperator(task_id="watch", data_file=data_file)
    try:
        seen = operator.execute(ctx)
    except AirflowSkipException as skipped:
        return skipped, ctx["outlet_events"]
    if recorded:
        RecordDataLookOperator(task_id="record", data_file=data_file, look=seen).execute(ctx)
    return seen, ctx["outlet_events"]


def state_of(roots, watcher=WATCHER, name="tones.jsonl") -> dict:
    path = (roots.data / name).resolve()
    return json.loads(state_path(roots.artifacts, watcher, path).read_text())


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
    state = state_of(roots)
    assert (state["path"], state["sha256"]) == (str(path.resolve()), sha256(path))


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
    skipped, _ = look(context, dag_id="another_watcher")
    assert isinstance(skipped, AirflowSkipException) and "first look" in str(skipped)
    assert sorted(p.name for p in (roots.artifacts / "data_watch").iterdir()) == [
        "another_watcher",
        WATCHER,
    ]


def test_a_change_is_recorded_only_after_the_check_succeeded(roots, context):
    """A run killed between the check (event emitted at its success) and the record
    reports the change again: the change is never lost."""
    path = roots.data / "tones.jsonl"
    look(context)
    path.write_text(path.read_text() + json.dumps({"phrase": "Oh.", "tone": "sad"}) + "\n")
    first, _ = look(context, recorded=False)  # killed before record
    again, events = look(context)
    assert first["changed"] and again["changed"]
    assert again["previous_sha256"] == first["previous_sha256"]
    assert events[ASSET].extra["sha256"] == sha256(path)
    assert state_of(roots)["sha256"] == sha256(path)
    skipped, _ = look(context)
    assert "unchanged" in str(skipped)


def test_each_watched_file_has_its_own_state_file(roots, context):
    (roots.data / "other.jsonl").write_text('{"phrase": "x", "tone": "sad"}\n')
    look(context)
    look(context, "other.jsonl")
    files = sorted(p.name for p in (roots.artifacts / "data_watch" / WATCHER).iterdir())
    assert len(files) == 2 and files[0].startswith("other.jsonl-")
    assert state_of(roots, name="other.jsonl")["path"].endswith("other.jsonl")


def test_a_look_of_another_file_is_not_recorded(roots, context):
    (roots.data / "other.jsonl").write_text('{"phrase": "x", "tone": "sad"}\n')
    forged = {"path": str((roots.data / "other.jsonl").resolve()), "sha256": "0" * 64}
    record = RecordDataLookOperator(task_id="record", data_file="tones.jsonl", look=forged)
    with pytest.raises(AirflowFailException, match="is not of .*tones.jsonl.*nothing recorded"):
        record.execute(context(dag_id=WATCHER))
    assert not (roots.artifacts / "data_watch").exists()


def test_the_state_of_earlier_versions_still_counts(roots, context):
    """Upgrading must not turn a known file into a first sighting (or miss a change)."""
    path = (roots.data / "tones.jsonl").resolve()
    legacy = legacy_state_path(roots.artifacts, WATCHER)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({str(path): {"sha256": "f" * 64}}))
    seen, events = look(context)
    assert seen["changed"] and seen["previous_sha256"] == "f" * 64 and len(events) == 1


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
