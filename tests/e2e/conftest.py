"""A private Airflow for end-to-end tests: api-server, scheduler and dag-processor as real
processes (LocalExecutor, SQLite) on a free loopback port, driven over the REST API.

Everything lives under one tmp folder: AIRFLOW_HOME, the data root (a tiny model and 96
tone rows) and the artifacts root. A failure shows the tails of the component logs and of
the failed tasks' logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
COMPONENTS = ("api-server", "scheduler", "dag-processor")
FINAL_STATES = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return f"----- {path} (last {lines} lines)\n" + "\n".join(text.splitlines()[-lines:])


def wait_until(what: str, probe, timeout: float, diagnose, interval: float = 2.0):
    """``probe()``'s first truthy result; network errors and HTTP errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except OSError as exc:  # connection refused, HTTP 404 (urllib's HTTPError), ...
            result, last_error = None, exc
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}: {last_error}\n" + diagnose()
    )


def stop(proc: subprocess.Popen) -> None:
    """Terminate the process group, then kill any descendant still there (task processes
    run in process groups of their own)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for survivor in psutil.wait_procs(family, timeout=10)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()


class Airflow:
    """The running stack: its REST API, folders and logs."""

    def __init__(self, url: str, home: Path, artifacts: Path, procs: dict, password: str):
        self.url, self.home, self.artifacts = url, home, artifacts
        self.procs, self.password = procs, password
        self.token: str | None = None

    def request(
        self, method: str, path: str, body: dict | None = None, query: dict | None = None
    ) -> dict:
        """One JSON call; an HTTP error carries the response body in its message."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            exc.msg = f"{exc.msg}: {method} {path}: {exc.read().decode(errors='replace')}"
            raise

    def login(self) -> None:
        body = {"username": "admin", "password": self.password}
        self.token = self.request("POST", "/auth/token", body)["access_token"]

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"Airflow components exited: {dead}\n{self.diagnose()}"

    def wait(self, what: str, probe, timeout: float):
        def alive_probe():
            self.check_alive()
            return probe()

        return wait_until(what, alive_probe, timeout, self.diagnose)

    def ready_dag(self, dag_id: str) -> str:
        """``dag_id`` once the dag-processor has parsed it, unpaused."""
        found = self.wait(
            f"the dag-processor to parse {dag_id}",
            lambda: self.request("GET", f"/api/v2/dags/{dag_id}"),
            timeout=300,
        )
        if found["is_paused"]:
            self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return dag_id

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{task_id or task_id[map_index]: state}`` of one run."""
        run = urllib.parse.quote(run_id, safe="")
        found = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances")
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in found["task_instances"]
        }

    def trigger_and_wait(self, dag_id: str, conf: dict, timeout: float = 600) -> dict:
        """Trigger ``dag_id`` with ``conf``; the finished dag run."""
        run = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
        )
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"

        def finished():
            current = self.request("GET", path)
            return current if current["state"] in FINAL_STATES else None

        return self.wait(f"{dag_id} run {run['dag_run_id']} to finish", finished, timeout)

    def diagnose(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        """Tails of the component logs, and of the run's unsuccessful tasks' logs."""
        parts = [tail(self.home / f"{name}.log") for name in COMPONENTS]
        if run_id:
            try:
                states = self.task_instances(dag_id, run_id)
            except OSError as exc:
                states = {"(unknown)": str(exc)}
            parts.insert(0, f"task states: {states}")
            run_logs = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            for log in sorted(run_logs.rglob("*.log")):
                task = next(p for p in log.parts if p.startswith("task_id=")).split("=", 1)[1]
                if not {states.get(task), states.get(f"{task}[0]")} & {"success", "skipped"}:
                    parts.append(tail(log))
        return "\n".join(parts)


def airflow_env(home: Path, root: Path, port: int, password_file: Path) -> dict[str, str]:
    """The process env without inherited Airflow settings (AIRFLOW__*, AIRFLOW_CONFIG, ...),
    plus this stack's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    url = f"http://127.0.0.1:{port}"
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(password_file),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__API__BASE_URL=url,
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        SLMOPS_ARTIFACTS_ROOT=str(root / "artifacts"),
        SLMOPS_DATA_ROOTS=str(root / "data"),
        SLMOPS_HOME=str(root / "slmops-home"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A running Airflow with the repository's DAGs, logged in as admin."""
    from slmops.testing import tiny_pipeline_data

    root = tmp_path_factory.mktemp("e2e")
    home = root / "airflow"
    home.mkdir()
    tiny_pipeline_data(root / "data")
    password = secrets.token_urlsafe(12)
    password_file = home / "passwords.json"
    password_file.write_text(json.dumps({"admin": password}), encoding="utf-8")
    port = free_port()
    env = airflow_env(home, root, port, password_file)

    migrate_log = home / "db-migrate.log"
    with migrate_log.open("w") as log:
        migrated = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT
        )
    assert migrated.returncode == 0, f"airflow db migrate failed\n{tail(migrate_log)}"

    args = {
        "api-server": ["--host", "127.0.0.1", "--port", str(port)],
        # Logs are local files the api-server reads; a log server would bind 0.0.0.0:8793.
        "scheduler": ["--skip-serve-logs"],
    }
    procs = {}
    try:
        for name in COMPONENTS:
            with (home / f"{name}.log").open("w") as log:
                procs[name] = subprocess.Popen(
                    [AIRFLOW, name, *args.get(name, [])],
                    env=env,
                    cwd=root,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        stack = Airflow(f"http://127.0.0.1:{port}", home, root / "artifacts", procs, password)
        stack.wait(
            "the api-server to be healthy",
            lambda: (
                stack.request("GET", "/api/v2/monitor/health")["metadatabase"]["status"]
                == "healthy"
            ),
            timeout=180,
        )
        stack.login()
        yield stack
    finally:
        for proc in procs.values():
            stop(proc)
