"""The training folder's lock: a live holder (a zombie attempt) makes a retryable
failure naming it; a holder that died is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from slmops.errors import SlmopsError, TrainingFolderBusy
from slmops.training.lock import holder_record
from slmops.training.run import run

# Another process takes the folder's lock as a training run does, says so, and sleeps.
HOLD = """
import sys, time
from pathlib import Path
from slmops.training.lock import exclusive
with exclusive(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of a folder; yields a function of the folder."""
    started = []

    def hold(training_dir, **env):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(training_dir)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        started.append(process)
        assert process.stdout.readline().strip() == "holding"
        return process

    yield hold
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_live_holder_makes_a_retryable_failure_that_names_it(finetune_config, holder):
    config = finetune_config(max_steps=1, eval_steps=1)
    zombie = holder(config.training_dir)
    logged = []
    with pytest.raises(TrainingFolderBusy) as refused:
        run(config, log=logged.append)
    # Not a SlmopsError: the operators fail those for good and let this one be retried.
    assert not isinstance(refused.value, SlmopsError)
    assert isinstance(refused.value, RuntimeError)
    message = str(refused.value)
    assert f"pid {zombie.pid} on host {socket.gethostname()}" in message
    assert "will be retried" in message
    assert logged.count(message) == 1  # one clear log line, the same as the error
    assert not config.folder.run_record.exists()  # nothing claimed, nothing trained


def test_the_lock_of_a_killed_holder_is_taken_over(finetune_config, holder):
    config = finetune_config(max_steps=1, eval_steps=1)
    zombie = holder(config.training_dir)
    recorded = json.loads(holder_record(config.training_dir).read_text())
    assert (recorded["pid"], recorded["host"]) == (zombie.pid, socket.gethostname())
    os.kill(zombie.pid, signal.SIGKILL)
    zombie.wait()
    assert holder_record(config.training_dir).exists()  # the dead holder's record stays
    result = run(config)
    assert result.metrics["global_step"] == 1
    assert not holder_record(config.training_dir).exists()  # removed on release


def test_an_airflow_attempt_holding_the_lock_is_named(tmp_path, holder):
    from slmops.training.lock import exclusive

    folder = tmp_path / "run"
    airflow_task = {
        "AIRFLOW_CTX_DAG_ID": "slm_finetune",
        "AIRFLOW_CTX_TASK_ID": "finetune",
        "AIRFLOW_CTX_TRY_NUMBER": "1",
    }
    zombie = holder(folder, **airflow_task)
    named = (
        rf"pid {zombie.pid} on host \S+ since [\d-]+ [\d:]+ UTC "
        r"\(Airflow slm_finetune\.finetune, try 1\);"
    )
    with pytest.raises(TrainingFolderBusy, match=named), exclusive(folder):
        pass
    record = json.loads(holder_record(folder).read_text())
    assert record["pid"] == zombie.pid
    assert time.strptime(record["since"], "%Y-%m-%d %H:%M:%S UTC")
