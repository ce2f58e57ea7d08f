"""The notices a pipeline run sent (RUN_DIR/alerts.jsonl): one JSON line per alert.

A failed gate, a failed parity gate, a failed task or a failed run is announced once
(in Airflow: slmops_airflow.alerts, an on-failure notifier). This module is the record
of it: ``record`` appends the alert with the channels that got it and those that did
not, ``read`` gives them back for the run's list, and ``classify`` tells a gate failure
and a parity failure from any other failed task, from the exception the task ended with.

Each line is appended with one write and synced, so two tasks that fail at once (mapped
optimize tasks, say) never interleave their lines.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from pathlib import Path

from slmops.errors import GateFailure
from slmops.layout import RunLayout

GATE_FAILED = "gate_failed"
PARITY_FAILED = "parity_failed"
TASK_FAILED = "task_failed"
RUN_FAILED = "run_failed"
KINDS = (GATE_FAILED, PARITY_FAILED, TASK_FAILED, RUN_FAILED)

# The gate optimize judges parity with (slmops.evaluation.gates.export_degradation):
# max_export_degradation[TARGET].
PARITY_GATE_PREFIX = "max_export_degradation"
_MAX_CHAIN = 32  # a cycle of causes never loops forever


def record(
    run_dir: Path,
    *,
    kind: str,
    dag_id: str,
    run_id: str,
    task_id: str | None,
    message: str,
    sent_to: list[str],
    failed_channels: list[dict] | None = None,
    at: str | None = None,
) -> dict:
    """Append one alert to RUN_DIR/alerts.jsonl (making the folder); returns it.

    ``sent_to``: the channels that took the alert ("log", "smtp:CONN_ID"...);
    ``failed_channels``: [{"channel", "error"}] for those that did not."""
    if kind not in KINDS:
        raise ValueError(f"alert kind {kind!r}: expected one of {', '.join(KINDS)}")
    entry = {
        "at": at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kind": kind,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "message": message,
        "sent_to": list(sent_to),
        "failed_channels": list(failed_channels or []),
    }
    path = RunLayout(run_dir).alerts
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    # O_APPEND and one write: the line lands whole after any other writer's line.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (a full disk, a signal): finish the line
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def read(run_dir: Path) -> list[dict]:
    """The run's alerts, oldest first; [] when it sent none. A line that is not a JSON
    object (a write cut short by a crash) is skipped with a warning naming its number."""
    path = RunLayout(run_dir).alerts
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    alerts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.warn(f"{path}:{number}: skipped a corrupt alert line ({exc})", stacklevel=2)
            continue
        if not isinstance(entry, dict):
            warnings.warn(
                f"{path}:{number}: skipped an alert line that is not an object", stacklevel=2
            )
            continue
        alerts.append(entry)
    return alerts


def causes(exception: BaseException | None) -> list[BaseException]:
    """``exception`` and what it was raised from (``__cause__``, else ``__context__``)."""
    chain: list[BaseException] = []
    while exception is not None and len(chain) < _MAX_CHAIN and exception not in chain:
        chain.append(exception)
        exception = exception.__cause__ or exception.__context__
    return chain


def gate_failure(exception: BaseException | None) -> GateFailure | None:
    """The GateFailure behind ``exception`` (an Airflow failure raised from it), if any."""
    return next((exc for exc in causes(exception) if isinstance(exc, GateFailure)), None)


def is_parity_failure(failure: GateFailure) -> bool:
    """Every failed gate is a parity gate (optimize's max_export_degradation[TARGET])."""
    names = [getattr(record, "name", "") for record in failure.failed]
    return bool(names) and all(name.startswith(PARITY_GATE_PREFIX) for name in names)


def classify(exception: BaseException | None) -> str:
    """gate_failed, parity_failed or task_failed, from the exception a task failed with."""
    failure = gate_failure(exception)
    if failure is None:
        return TASK_FAILED
    return PARITY_FAILED if is_parity_failure(failure) else GATE_FAILED
