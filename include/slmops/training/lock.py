"""The training folder's lock: one writer at a time, a busy folder retried, never stuck.

The lock is an OS file lock (``flock``, through filelock): the kernel drops it when its
holder dies, however it dies, so a killed attempt never blocks its retry; the next run
simply takes the lock over. While a live process holds it (another run, or an earlier
attempt of the same task that Airflow lost track of: a zombie), a second one is refused
at once with ``TrainingFolderBusy``, a RuntimeError, so Airflow retries the task instead
of failing it for good; by then the holder has finished (the retry reuses its run) or
died (the retry resumes from its checkpoints). Each holder records who it is beside the
lock, so the refusal names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from slmops.artifacts import atomic_write_json, process_alive
from slmops.errors import TrainingFolderBusy
from slmops.layout import TrainingLayout
from slmops.progress import Log, no_log

# Set by Airflow's task runner in the task's environment: which attempt holds the lock.
_AIRFLOW_TASK_VARS = ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_TRY_NUMBER")


@contextlib.contextmanager
def exclusive(training_dir: Path, log: Log = no_log) -> Iterator[None]:
    """Hold the folder's lock for the whole run; raise ``TrainingFolderBusy`` at once
    (after one log line naming the holder) while another live process has it."""
    training_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(TrainingLayout(training_dir).lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        message = busy_message(training_dir)
        log(message)
        raise TrainingFolderBusy(message) from None
    record = holder_record(training_dir)
    try:
        atomic_write_json(record, _this_holder())
        yield
    finally:
        record.unlink(missing_ok=True)
        lock.release()


def holder_record(training_dir: Path) -> Path:
    """Who holds the lock: written by each holder once it has it, removed before it lets go."""
    lock = TrainingLayout(training_dir).lock
    return lock.with_name(lock.name + ".holder")


def busy_message(training_dir: Path) -> str:
    return (
        f"{training_dir} is being trained by {describe_holder(training_dir)}; this attempt "
        "stops and will be retried (Airflow retries the task; from the CLI, run it again): "
        "once that process ends, the retry reuses its finished run or resumes from its "
        "last checkpoint. To train beside it instead, choose another --output_path "
        "(or --task_name)"
    )


def describe_holder(training_dir: Path) -> str:
    """The holder as its record names it, e.g. ``pid 41 on host w1 since 10:02:11 UTC
    (Airflow slm_finetune.finetune, try 1)``."""
    try:
        holder = json.loads(holder_record(training_dir).read_text(encoding="utf-8"))
        pid, host, since = int(holder["pid"]), str(holder["host"]), str(holder["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not recorded itself yet)"
    text = f"pid {pid} on host {host} since {since}"
    if holder.get("airflow_task"):
        text += f" ({holder['airflow_task']})"
    if host == socket.gethostname() and not process_alive(pid):
        text += (
            ", which has exited (a process it started still holds the lock, or a new "
            "holder has not recorded itself yet)"
        )
    return text


def _this_holder() -> dict:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    dag, task, attempt = (os.environ.get(name) for name in _AIRFLOW_TASK_VARS)
    if dag and task:
        holder["airflow_task"] = f"Airflow {dag}.{task}, try {attempt or '?'}"
    return holder
