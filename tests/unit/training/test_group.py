"""The multi-process launcher without training: settings refused up front, the torchrun
command and environment, how a group's end becomes an error, and stopping a real process
tree (a parent and a child in a session of its own, as torchrun and its ranks are)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from pydantic import ValidationError

from slmops.devices import Placement
from slmops.errors import ConfigError, DataError, TrainingError, TrainingGroupFailed
from slmops.training import group
from slmops.training.config import FinetuneConfig
from slmops.training.run import run
from slmops.training.trainer import _group_arguments

CPU = Placement("cpu", "float32", None, "float32")
GPU = Placement("cuda", "bfloat16", "bf16", "bfloat16")


def config(tmp_path, **settings) -> FinetuneConfig:
    return FinetuneConfig(
        model_name_or_path="m",
        data_files=["d.jsonl"],
        text_field="text",
        output_path=tmp_path / "r",
        **settings,
    )


def test_fsdp_needs_several_processes_and_lora_or_full(tmp_path):
    with pytest.raises(ValidationError, match="set num_processes 2 or more"):
        config(tmp_path, fsdp=True)
    with pytest.raises(ValidationError, match="fsdp works with method lora or full, not qlora"):
        config(tmp_path, fsdp=True, num_processes=2, method="qlora")
    assert config(tmp_path, fsdp=True, num_processes=2, method="full").fsdp


def test_fsdp_on_cpu_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="--fsdp shards the model across GPUs"):
        group.check_group(config(tmp_path, fsdp=True, num_processes=2), CPU)
    group.check_group(config(tmp_path, num_processes=2), CPU)  # plain DDP on CPU is fine


def test_more_processes_than_gpus_is_refused(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    group.check_group(config(tmp_path, num_processes=2), GPU)
    with pytest.raises(ConfigError, match="--num_processes 4: one process per GPU, and 2"):
        group.check_group(config(tmp_path, num_processes=4), GPU)


def test_callbacks_need_one_process(tmp_path):
    with pytest.raises(ConfigError, match="train with num_processes 1 to use them"):
        run(config(tmp_path, num_processes=2), callbacks=[object()])


def test_trainer_arguments_of_a_group(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    # The launcher completing a finished run is not in a group.
    assert _group_arguments(config(tmp_path, num_processes=2), CPU) == {}
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert _group_arguments(config(tmp_path), CPU) == {}
    assert _group_arguments(config(tmp_path, num_processes=2), CPU) == {"ddp_backend": "gloo"}
    sharded = _group_arguments(config(tmp_path, num_processes=8, fsdp=True), GPU)
    assert sharded["ddp_backend"] == "nccl" and sharded["fsdp"] is True
    assert sharded["fsdp_config"]["version"] == 2
    assert sharded["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"


def test_the_torchrun_command_is_one_host_and_never_restarts(tmp_path):
    command = group.torchrun_command(3, tmp_path / "group.json")
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert {"--standalone", "--nnodes=1", "--nproc-per-node=3", "--max-restarts=0"} <= set(command)
    assert command[-3:] == [
        "--module",
        "slmops.training.group_worker",
        str(tmp_path / "group.json"),
    ]


def test_the_environment_shares_the_cores_and_the_code(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setattr(group.os, "sched_getaffinity", lambda pid: set(range(8)))
    env = group.group_environment(config(tmp_path, num_processes=4))
    assert env["OMP_NUM_THREADS"] == "2"  # 8 cores / 4 processes
    assert env["GLOO_SOCKET_IFNAME"] == "lo"
    import slmops

    package_root = str(__import__("pathlib").Path(slmops.__file__).parents[1])
    assert package_root in env["PYTHONPATH"].split(":")

    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # what the user set wins
    assert group.group_environment(config(tmp_path, num_processes=4))["OMP_NUM_THREADS"] == "5"


def test_a_refusal_recorded_by_a_process_is_raised_as_its_own_type(tmp_path):
    record = tmp_path / "group-error.json"
    group.record_refusal(record, DataError("data.jsonl, line 3: bad row"))
    error = group._failure(record, 1, ["[rank 0] stopped: ..."])
    assert type(error) is DataError and str(error) == "data.jsonl, line 3: bad row"

    record.write_text('{"type": "NotAnError", "message": "odd"}')
    assert type(group._failure(record, 1, [])) is TrainingError


def test_a_crash_is_retryable_and_shows_the_last_lines(tmp_path):
    error = group._failure(tmp_path / "none.json", -9, [f"line {n}" for n in range(30)])
    assert isinstance(error, TrainingGroupFailed) and not isinstance(error, TrainingError)
    message = str(error)
    assert "torchrun exit -9" in message and "a rerun resumes" in message
    assert "line 29" in message and "line 17" not in message  # the last 12 lines
    assert "wrote no metrics" in str(group._failure(tmp_path / "none.json", 0, []))


# A parent that starts a child in a session of its own (torchrun starts its ranks so), then
# both wait: stopping must reach the child, which a process-group kill would miss.
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print("ready", flush=True)
time.sleep(600)
"""


def test_stop_all_stops_the_whole_tree(monkeypatch):
    monkeypatch.setattr(group, "GRACE_SECONDS", 2.0)
    with group._group([sys.executable, "-c", TREE], env=None) as process:
        assert process.stdout.readline().strip() == "ready"
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children()]
        assert len(members) == 2
        group.stop_all()
        assert process.pid in group._stopped
        gone, alive = psutil.wait_procs(members, timeout=10)
        assert not alive
    assert process.pid not in group._stopped and not group._running


def test_a_process_that_ignores_sigterm_is_killed(monkeypatch):
    monkeypatch.setattr(group, "GRACE_SECONDS", 1.0)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "print('ready', flush=True); time.sleep(600)"
    process = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    group._stop(process)
    assert process.returncode == -9
