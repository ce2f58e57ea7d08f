"""RUN_DIR/alerts.jsonl: appending alerts, reading them back, telling failures apart."""

from __future__ import annotations

import datetime
import json
import threading

import pytest

from slmops.errors import ConfigError, GateFailure
from slmops.evaluation.gates import GateRecord
from slmops.layout import RunLayout
from slmops.pipeline import alerts


def _gate(name: str) -> GateRecord:
    return GateRecord(name, 0.1, 0.5, False, f"{name} explained")


def _alert(run_dir, **more) -> dict:
    settings = {
        "kind": alerts.GATE_FAILED,
        "dag_id": "slm_finetune",
        "run_id": "manual__1",
        "task_id": "evaluate",
        "message": "slm_finetune run manual__1: evaluate failed a gate: 1 gate failed",
        "sent_to": ["log"],
        **more,
    }
    return alerts.record(run_dir, **settings)


def test_record_appends_one_line_and_read_gives_it_back(tmp_path):
    run_dir = tmp_path / "runs" / "slm_finetune" / "manual__1"  # not there yet: made
    first = _alert(run_dir)
    second = _alert(
        run_dir,
        kind=alerts.RUN_FAILED,
        task_id=None,
        message="the run failed",
        sent_to=["log", "smtp:alerts"],
        failed_channels=[{"channel": "slack:team", "error": "not installed"}],
    )
    lines = RunLayout(run_dir).alerts.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == first
    assert alerts.read(run_dir) == [first, second]
    assert second["failed_channels"] == [{"channel": "slack:team", "error": "not installed"}]
    assert first["failed_channels"] == [] and first["task_id"] == "evaluate"
    at = datetime.datetime.fromisoformat(first["at"])
    assert at.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.UTC) - at).total_seconds()) < 60


def test_an_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="alert kind 'oops': expected one of gate_failed"):
        _alert(tmp_path, kind="oops")
    assert not RunLayout(tmp_path).alerts.exists()


def test_a_run_without_alerts_reads_empty(tmp_path):
    assert alerts.read(tmp_path / "nowhere") == []


def test_a_corrupt_line_is_skipped_with_its_number(tmp_path):
    good = _alert(tmp_path)
    with RunLayout(tmp_path).alerts.open("a") as file:
        file.write('{"kind": "gate_fa\n[1, 2]\n\n')
    later = _alert(tmp_path, kind=alerts.TASK_FAILED)
    with pytest.warns(UserWarning) as warned:
        assert alerts.read(tmp_path) == [good, later]
    messages = [str(warning.message) for warning in warned]
    assert any("alerts.jsonl:2: skipped a corrupt alert line" in text for text in messages)
    assert any(
        "alerts.jsonl:3: skipped an alert line that is not an object" in text for text in messages
    )


def test_concurrent_writers_never_interleave_lines(tmp_path):
    long_message = "x" * 20_000  # far beyond one pipe buffer: a torn write would show

    def write(index: int) -> None:
        for _ in range(20):
            _alert(tmp_path, task_id=f"optimize[{index}]", message=long_message)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = alerts.read(tmp_path)
    assert len(entries) == 80
    assert all(entry["message"] == long_message for entry in entries)


def test_classify_a_failed_gate():
    assert alerts.classify(GateFailure([_gate("min_metric[accuracy]")])) == alerts.GATE_FAILED


def test_classify_a_failed_parity_gate():
    failure = GateFailure([_gate("max_export_degradation[cpu-int4]")])
    assert alerts.classify(failure) == alerts.PARITY_FAILED
    mixed = GateFailure([_gate("max_export_degradation[cpu-int4]"), _gate("loss_gap")])
    assert alerts.classify(mixed) == alerts.GATE_FAILED


class _TaskFailed(Exception):
    """Stands for AirflowFailException (the library never imports Airflow)."""


def test_classify_walks_the_causes():
    """failing_clearly() raises the Airflow failure from the gate failure."""
    failure = GateFailure([_gate("max_export_degradation[cpu-fp32]")])
    try:
        try:
            raise failure
        except GateFailure as exc:
            raise _TaskFailed(str(exc)) from exc
    except _TaskFailed as wrapped:
        assert alerts.classify(wrapped) == alerts.PARITY_FAILED
        assert alerts.gate_failure(wrapped) is failure


def test_classify_anything_else_as_a_failed_task():
    assert alerts.classify(None) == alerts.TASK_FAILED
    assert alerts.classify(RuntimeError("worker died")) == alerts.TASK_FAILED
    refused = _TaskFailed("bad param")
    refused.__cause__ = ConfigError("bad param")
    assert alerts.classify(refused) == alerts.TASK_FAILED


def test_causes_stop_at_a_cycle():
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert alerts.causes(first) == [first, second]
