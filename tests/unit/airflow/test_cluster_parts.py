"""The native cluster's parts that need no server: cluster.env parsing, secrets, the
components' environment, a clear error when PostgreSQL / Redis cannot be installed, and
process trees stopped whole (grandchildren in sessions of their own included)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest

from slmops_airflow.cluster import services
from slmops_airflow.cluster.errors import ClusterError
from slmops_airflow.cluster.hostname import worker_hostname
from slmops_airflow.cluster.processes import Component, ProcessId, kill_tree
from slmops_airflow.cluster.settings import (
    ENV_FILE,
    ClusterSettings,
    Secrets,
    airflow_env,
    read_env_file,
)
from slmops_airflow.cluster.supervisor import check_folder

# A shell that starts a grandchild in a session of its own (as Airflow's task runner and
# torchrun do), prints its PID, then waits.
ESCAPING_TREE = "setsid sleep 300 & echo $! ; sleep 300"


def test_env_file_lines_and_a_clear_error_for_a_bad_one(tmp_path):
    good = tmp_path / "good.env"
    good.write_text("# comment\n\nA=1\nB = two words\nC=x=y\n")
    assert read_env_file(good) == {"A": "1", "B": "two words", "C": "x=y"}
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\nnot a setting\n")
    with pytest.raises(ClusterError, match=r"bad.env:2: expected KEY=VALUE"):
        read_env_file(bad)
    assert read_env_file(ENV_FILE)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_secrets_are_made_once_private_and_reused(tmp_path):
    made = Secrets.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    assert Secrets.load_or_create(tmp_path) == made
    assert len(made.jwt_secret) >= 64 and made.postgres_password != made.redis_password


def test_components_get_cluster_env_loopback_services_and_no_inherited_airflow(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")  # from the caller's shell
    monkeypatch.setenv("AIRFLOW_CONFIG", "/elsewhere/airflow.cfg")
    settings = ClusterSettings(
        folder=tmp_path,
        artifacts_root=tmp_path / "artifacts",
        api_port=18080,
        postgres_port=15433,
        redis_port=16380,
        overrides={"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20"},
    )
    keys = Secrets.load_or_create(tmp_path)
    env = airflow_env(settings, keys)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "AIRFLOW_CONFIG" not in env
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://airflow:{keys.postgres_password}@127.0.0.1:15433/airflow"
    )
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"] == (
        f"redis://:{keys.redis_password}@127.0.0.1:16380/0"
    )
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "20"  # override wins
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_a_folder_that_lost_its_secrets_is_refused(tmp_path):
    settings = ClusterSettings(folder=tmp_path, artifacts_root=tmp_path / "artifacts")
    check_folder(settings)  # a new folder is fine
    (tmp_path / "postgres").mkdir()
    with pytest.raises(ClusterError, match=r"secrets.json is gone .* remove .* to start over"):
        check_folder(settings)
    Secrets.load_or_create(tmp_path)
    check_folder(settings)


def test_missing_servers_without_root_say_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "postgres_bin", lambda: None)
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterError) as missing:
        services.ensure_installed(tmp_path / "install.log")
    message = str(missing.value)
    assert "sudo apt-get install -y postgresql redis-server" in message
    assert "SLMOPS_PG_BIN" in message


def test_hostname_names_the_worker(monkeypatch):
    monkeypatch.delenv("SLMOPS_WORKER_NAME", raising=False)
    plain = worker_hostname()
    monkeypatch.setenv("SLMOPS_WORKER_NAME", "worker-gpu")
    assert worker_hostname() == f"worker-gpu@{plain}"


def _grandchild(process: subprocess.Popen) -> psutil.Process:
    return psutil.Process(int(process.stdout.readline()))


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_component_stops_its_whole_tree(tmp_path):
    component = Component(
        name="tree",
        argv=["bash", "-c", ESCAPING_TREE + " > /dev/null"],
        env={"PATH": os.environ["PATH"]},
        log=tmp_path / "tree.log",
        cwd=tmp_path,
    )
    started = component.start()
    root = psutil.Process(started.pid)
    family = []
    while not family:
        family = root.children(recursive=True)
        time.sleep(0.05)
    component.stop(grace=5)
    psutil.wait_procs(family, timeout=10)
    assert all(_gone(p) for p in [root, *family])
    assert started.process() is None  # a stopped process is no longer "the" process
    assert "starting tree" in component.log.read_text()


def test_kill_tree_takes_every_descendant_at_once():
    shell = subprocess.Popen(["bash", "-c", ESCAPING_TREE], stdout=subprocess.PIPE, text=True)
    grandchild = _grandchild(shell)
    kill_tree(psutil.Process(shell.pid))
    psutil.wait_procs([grandchild], timeout=10)
    # psutil reaped the shell: Popen no longer sees its status, only that it ended.
    assert shell.poll() is not None and _gone(grandchild)


def test_process_ids_survive_pid_reuse():
    shell = subprocess.Popen(["sleep", "60"])
    record = ProcessId.of(shell.pid)
    assert record.process() is not None
    assert ProcessId(shell.pid, record.started - 100).process() is None
    shell.kill()
    shell.wait()
    assert record.process() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_the_tree_of_its_command_on_a_signal(sig):
    """`python -m slmops_airflow.cluster run -- CMD`: what `make airflow` runs."""
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "slmops_airflow.cluster", "run", "--", "bash", "-c", ESCAPING_TREE],
        stdout=subprocess.PIPE,
        text=True,
    )
    grandchild = _grandchild(wrapper)
    wrapper.send_signal(sig)
    assert wrapper.wait(60) == 128 + sig
    psutil.wait_procs([grandchild], timeout=10)
    assert _gone(grandchild), "the grandchild in its own session outlived `run`"


def test_down_and_status_without_a_cluster(tmp_path):
    def command(*args):
        return subprocess.run(
            [sys.executable, "-m", "slmops_airflow.cluster", *args, "--folder", str(tmp_path)],
            capture_output=True,
            text=True,
        )

    down, status = command("down"), command("status")
    assert down.returncode == 0 and "no cluster running" in down.stdout
    assert status.returncode == 3 and "no cluster running" in status.stdout
