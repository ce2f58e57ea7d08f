"""Faults a CeleryExecutor deployment meets, on the real cluster: a worker killed in the
middle of fine-tuning, a scheduler restarted in the middle of a run, PostgreSQL restarted
between two tasks, and two runs of one DAG at once. The supervisor restarts whatever
stopped, as compose's `restart: always` does."""

from __future__ import annotations

import json
import signal
import time

import psutil
import pytest

from slmops.layout import RunLayout
from slmops.pipeline.locations import run_dir
from slmops.testing import tiny_pipeline_params
from slmops_airflow.cluster.processes import kill_tree

pytestmark = pytest.mark.cluster

DAG_ID = "slm_finetune"


def _states(cluster, run_id: str) -> dict[str, str]:
    return cluster.task_instances(DAG_ID, run_id)


def _wait_for_task(cluster, run_id: str, task_id: str, states: set[str], timeout: float = 300):
    return cluster.wait(
        f"{task_id} of {run_id} to be {'/'.join(states)}",
        lambda: _states(cluster, run_id).get(task_id) in states,
        timeout,
    )


def _tries(cluster, run_id: str) -> dict[str, int]:
    return {r["task_id"]: r["try_number"] for r in cluster.task_instance_records(DAG_ID, run_id)}


def _succeeded(cluster, run_id: str, timeout: float = 900) -> dict:
    run = cluster.wait_for_run(DAG_ID, run_id, timeout)
    assert run["state"] == "success", cluster.diagnose(DAG_ID, run_id)
    return run


def test_worker_killed_mid_finetune_is_retried_and_resumes_from_its_checkpoint(cluster):
    dag = cluster.ready_dag(DAG_ID)
    # Long enough to be killed in the middle: a checkpoint every 20 of 400 steps.
    conf = tiny_pipeline_params("cluster-killed", max_steps=400, eval_steps=20)
    run_id = cluster.trigger(dag, conf)
    training = RunLayout(run_dir(cluster.artifacts, DAG_ID, run_id)).finetune
    checkpoint = cluster.wait(
        "finetune's first complete checkpoint",
        lambda: next(
            iter(sorted(training.checkpoints.glob("checkpoint-*/trainer_state.json"))), None
        ),
        timeout=600,
    )
    assert not training.metrics.exists(), "the training finished before the kill"
    worker = cluster.process("worker-cpu")
    # The whole worker at once, task processes included: a lost host or an OOM kill.
    kill_tree(worker)
    killed_at = time.monotonic()
    cluster.restarted("worker-cpu", worker.pid)

    _succeeded(cluster, run_id)
    assert _tries(cluster, run_id)["finetune"] == 2, _tries(cluster, run_id)
    metrics = json.loads(training.metrics.read_text())
    resumed = metrics["resumed_from"]
    assert resumed and int(resumed.split("-")[1]) >= int(checkpoint.parent.name.split("-")[1])
    steps = [entry["step"] for entry in metrics["eval_loss_history"]]
    assert steps == sorted(set(steps)) and steps[0] == 20, steps  # one history, no restart
    log = cluster.task_log(DAG_ID, run_id, "finetune", try_number=2)
    assert f"resumed at step {resumed.split('-')[1]}/" in log, log[-3000:]
    print(f"lost task retried and finished {time.monotonic() - killed_at:.0f} s after the kill")


def test_scheduler_restarted_mid_run_the_run_completes(cluster):
    dag = cluster.ready_dag(DAG_ID)
    run_id = cluster.trigger(dag, tiny_pipeline_params("cluster-scheduler", max_steps=200))
    _wait_for_task(cluster, run_id, "finetune", {"running"})
    scheduler = cluster.process("scheduler")
    scheduler.send_signal(signal.SIGTERM)
    psutil.wait_procs([scheduler], timeout=60)
    cluster.restarted("scheduler", scheduler.pid)
    _succeeded(cluster, run_id)
    assert _tries(cluster, run_id)["finetune"] == 1, "the running task was adopted, not rerun"


def test_postgres_restarted_between_tasks_the_run_completes(cluster):
    dag = cluster.ready_dag(DAG_ID)
    run_id = cluster.trigger(dag, tiny_pipeline_params("cluster-postgres"))
    _wait_for_task(cluster, run_id, "validate", {"success"})
    postgres = cluster.process("postgres")
    postgres.send_signal(signal.SIGINT)  # fast shutdown: every connection is cut
    psutil.wait_procs([postgres], timeout=60)
    cluster.restarted("postgres", postgres.pid)
    _succeeded(cluster, run_id)
    print(f"tries after the PostgreSQL restart: {_tries(cluster, run_id)}")


def test_two_runs_at_once_with_different_model_names(cluster):
    dag = cluster.ready_dag(DAG_ID)
    runs = {
        name: cluster.trigger(dag, tiny_pipeline_params(name))
        for name in ("cluster-first", "cluster-second")
    }
    finished = {name: _succeeded(cluster, run_id) for name, run_id in runs.items()}
    first, second = finished.values()
    assert first["start_date"] < second["end_date"] and second["start_date"] < first["end_date"]
    folders = [run_dir(cluster.artifacts, DAG_ID, run_id) for run_id in runs.values()]
    assert folders[0] != folders[1]
    assert folders[0] not in folders[1].parents and folders[1] not in folders[0].parents
    for name, run_id in runs.items():
        latest = json.loads((cluster.artifacts / "models" / name / "latest.json").read_text())
        manifest = json.loads(
            (cluster.artifacts / "models" / latest["path"] / "manifest.json").read_text()
        )
        assert manifest["run_id"] == run_id, manifest
