"""The native CeleryExecutor cluster for tests: PostgreSQL, Redis, api-server, scheduler,
dag-processor, triggerer and two Celery workers (queues `default` and `gpu`), started once
per session with `python -m slmops_airflow.cluster up` (what `make cluster` runs) on free
loopback ports, everything under one folder in /tmp, and stopped with `down` (what `make
cluster-stop` runs). Teardown checks that no process of the cluster is left.

PostgreSQL and Redis come from Debian's packages, which `up` installs when missing (as root
with apt-get; CI is). The `gpu` worker runs its tasks on CPU here (a test-only switch).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from airflow_rest import AirflowRest, free_port, tail

REPO = Path(__file__).resolve().parents[2]
# Short enough to see a lost task retried within a test; cluster.env's own value is 120 s.
HEARTBEAT_TIMEOUT = 20
# A task whose Celery message was lost (sent while PostgreSQL was down: its state could not be
# stored) stays queued until this; it is then sent again. Airflow's default is 600 s.
QUEUED_TIMEOUT = 120
# Includes installing PostgreSQL and Redis with apt-get on a fresh machine.
STARTUP_SECONDS = 600


def cluster_command(*args: str, env: dict | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "slmops_airflow.cluster", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes_under(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line or working folder lies under ``folder``."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            texts = [*(process.info["cmdline"] or ()), process.info["cwd"] or ""]
            if any(str(folder) in text for text in texts):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


class Cluster(AirflowRest):
    """The running cluster: REST API, folders, and its components by name."""

    def __init__(self, root: Path, port: int, password: str):
        self.root, self.folder = root, root / ".cluster"
        logs = self.folder / "logs"
        names = ("supervisor",)
        component_logs = [self.folder / f"{name}.log" for name in names] + [
            logs / f"{name}.log"
            for name in ("scheduler", "worker-cpu", "worker-gpu", "api-server", "postgres")
        ]
        super().__init__(
            f"http://127.0.0.1:{port}",
            self.folder / "airflow",
            root / "artifacts",
            password,
            component_logs,
        )

    def state(self) -> dict:
        return json.loads((self.folder / "state.json").read_text(encoding="utf-8"))

    def process(self, name: str) -> psutil.Process:
        record = self.state()["components"][name]
        process = psutil.Process(record["pid"])
        assert abs(process.create_time() - record["started"]) < 0.01, f"{name} PID reused"
        return process

    def check_alive(self) -> None:
        supervisor = self.state()["supervisor"]
        assert psutil.pid_exists(supervisor["pid"]), f"the supervisor died\n{self.diagnose()}"

    def restarted(self, name: str, old_pid: int, timeout: float = 120) -> psutil.Process:
        """``name`` once the supervisor has started it again (a new PID), and it runs."""

        def new_process():
            current = self.state()["components"].get(name)
            return current and current["pid"] != old_pid and self.process(name)

        return self.wait(f"the supervisor to restart {name}", new_process, timeout)


# Package scope (tests/cluster is a package): the cluster stops after this tier's last
# test; a session fixture kept six Airflow processes busy through every later test.
@pytest.fixture(scope="package")
def cluster():
    """The running cluster, logged in as admin; stopped (and checked empty) at the end."""
    from slmops.testing import tiny_pipeline_data

    # Not pytest's tmp folder (mode 0700): as root, PostgreSQL runs as user postgres, which
    # must be able to enter every folder above its data.
    root = Path(tempfile.mkdtemp(prefix="slmops-cluster-", dir="/tmp"))
    root.chmod(0o755)
    tiny_pipeline_data(root / "data")
    port, password = free_port(), secrets.token_urlsafe(12)
    env = {**os.environ, "SLMOPS_ADMIN_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    started = time.monotonic()
    up = cluster_command(
        "up",
        f"--folder={root / '.cluster'}",
        f"--artifacts_root={root / 'artifacts'}",
        f"--api_port={port}",
        f"--postgres_port={free_port()}",
        f"--redis_port={free_port()}",
        f"--data_roots={root / 'data'}",
        f"--slmops_home={root / 'slmops-home'}",
        f"--set=AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT={HEARTBEAT_TIMEOUT}",
        f"--set=AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT={QUEUED_TIMEOUT}",
        "--gpu_worker_on_cpu",
        f"--timeout={STARTUP_SECONDS}",
        env=env,
    )
    stack = Cluster(root, port, password)
    try:
        assert up.returncode == 0, f"cluster up failed:\n{up.stdout}\n{up.stderr}\n" + "\n".join(
            tail(log) for log in sorted((root / ".cluster" / "logs").glob("*.log"))
        )
        print(f"cluster up in {time.monotonic() - started:.0f} s")
        stack.login()
        yield stack
    finally:
        down = cluster_command("down", f"--folder={root / '.cluster'}", timeout=300)
        left = processes_under(root)
        described = [" ".join(p.cmdline()[:4]) for p in left]
        for process in left:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, f"cluster down failed: {down.stdout}{down.stderr}"
        assert not left, f"processes left after `down`: {described}"
