"""Every slmops task's default execution_timeout, in one table.

Ceilings, not estimates: a hung stage (a stuck download, a deadlocked exporter, a
torchrun group that never returns) frees its worker slot instead of holding it forever.
On expiry Airflow raises AirflowTaskTimeout in the task: the operator's ``on_kill`` stops
what it started (training processes), and the task is retried like any other error (the
DAG's ``retries``; a retried finetune resumes from its last checkpoint), then fails and
alerts. Each operator takes ``execution_timeout=`` to override its default (``None``: no
limit), and a DAG's ``default_args`` may set one for all its tasks. The approval task's
wait for a reviewer is bounded by the run's ``approval_timeout_hours`` instead; its own
execution_timeout covers only writing the report before it asks, and recording the answer.
"""

from __future__ import annotations

import datetime

_MINUTE = datetime.timedelta(minutes=1)
_HOUR = datetime.timedelta(hours=1)

STAGE_TIMEOUTS: dict[str, datetime.timedelta] = {
    "plan": 15 * _MINUTE,  # prepare, plan_trials, plan_adapters: params, confinement, suites
    "validate": 2 * _HOUR,  # Great Expectations over the data, tokenized
    "finetune": 24 * _HOUR,  # training (or a torchrun group)
    "trial": 6 * _HOUR,  # one HPO trial: a short training and its scoring
    "evaluate": 6 * _HOUR,  # base and fine-tuned answers on the eval rows
    "optimize": 6 * _HOUR,  # ONNX export, parity, benchmark of one target
    "build_adapters": 6 * _HOUR,  # the shared multi-adapter base and every adapter's scores
    "challenge": 3 * _HOUR,  # champion and challenger on the same eval rows
    "approve": 30 * _MINUTE,  # writing the report before the wait; recording the answer
    "report": 30 * _MINUTE,  # report files and the tracker
    "publish": 1 * _HOUR,  # copying or linking a version into the model store
    "select": 15 * _MINUTE,  # picking the best HPO trial
    "data_watch": 30 * _MINUTE,  # hashing one data file
    "record_data_look": 5 * _MINUTE,
    "small": 5 * _MINUTE,  # the DAGs' own small Python tasks (routing, lists to map over)
}


def stage_timeout(stage: str) -> datetime.timedelta:
    return STAGE_TIMEOUTS[stage]
