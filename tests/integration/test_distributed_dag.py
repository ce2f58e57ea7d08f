"""slm_finetune with num_processes 2 under ``dag.test()``: the run succeeds with a torchrun
group in its finetune task, and killing that task leaves no training process behind.
(A task process killed with SIGKILL takes its group along too: see the CLI's test in
test_distributed_training.py, the same mechanism.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from dag_runs import LOGICAL_DATE, RUNNER, read_json, run_dag
from processes import no_processes_left, processes_mentioning

from slmops.pipeline import locations

pytestmark = pytest.mark.integration


def test_a_two_process_run_succeeds(dag_env, conf, tmp_path):
    artifacts = tmp_path / "artifacts"
    result, output = run_dag(dag_env, artifacts, {**conf, "num_processes": 2})
    assert result["state"] == "success", output[-5000:]
    assert result["tasks"]["finetune"] == "success"
    assert result["tasks"]["publish"] == "success"
    run = locations.run_dir(artifacts, "slm_finetune", result["run_id"])
    metrics = read_json(run / "finetune" / "training_metrics.json")
    assert metrics["num_processes"] == 2 and metrics["global_step"] == 60
    assert metrics["global_batch_size"] == 2 * conf["per_device_train_batch_size"]
    assert read_json(run / "plan.json")["finetune"]["num_processes"] == 2
    for rank in (0, 1):
        assert f"[rank {rank}] step 60/60" in output
    no_processes_left(str(artifacts))


def test_killing_the_finetune_task_leaves_no_training_process(dag_env, conf, tmp_path):
    """SIGTERM is how Airflow kills a task: on_kill stops the group, the task fails
    retryably, and the run's process lives on (dag.test would retry the task)."""
    runner, seen, artifacts = _start_long_run(dag_env, conf, tmp_path)
    try:
        runner.send_signal(signal.SIGTERM)
        for line in runner.stdout:
            seen.append(line)
            if "end task task_id=finetune" in line:
                break
        output = "".join(seen)
        assert "the training processes were stopped (the task was killed)" in output
        assert "new_state=up_for_retry" in output
        assert runner.poll() is None  # the processes went because on_kill stopped them
        no_processes_left(str(artifacts))
    finally:
        runner.kill()
        runner.wait()


def _start_long_run(dag_env, conf, tmp_path):
    """slm_finetune in a child process, returned once rank 1 has trained a step."""
    artifacts = tmp_path / "artifacts"
    long_run = {**conf, "num_processes": 2, "max_steps": 100_000, "eval_steps": 10_000}
    runner = subprocess.Popen(
        [sys.executable, str(RUNNER), "slm_finetune", json.dumps(long_run), LOGICAL_DATE],
        env={**dag_env, "SLMOPS_ARTIFACTS_ROOT": str(artifacts)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    for line in runner.stdout:
        seen.append(line)
        if "[rank 1] step " in line:
            break
    else:
        runner.wait()
        pytest.fail("the run ended before rank 1 trained a step:\n" + "".join(seen[-40:]))
    assert len(processes_mentioning(str(artifacts))) == 3  # torchrun + two ranks
    return runner, seen, artifacts
