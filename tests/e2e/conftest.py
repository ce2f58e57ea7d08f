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
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from airflow_rest import AirflowRest, free_port, tail

from slmops_airflow.cluster.settings import without_airflow_settings

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Terminate each process group, all at once (each component takes seconds to shut
    down, and one at a time they added up), then kill any group or descendant still there
    (task processes run in process groups of their own)."""
    family = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            family += psutil.Process(proc.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for survivor in psutil.wait_procs(family, timeout=10)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()


class Airflow(AirflowRest):
    """The running stack: its REST API, folders, logs and processes."""

    def __init__(self, url: str, home: Path, artifacts: Path, procs: dict, password: str):
        logs = [home / f"{name}.log" for name in COMPONENTS]
        super().__init__(url, home, artifacts, password, logs)
        self.procs = procs

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"Airflow components exited: {dead}\n{self.diagnose()}"


def airflow_env(home: Path, root: Path, port: int, password_file: Path) -> dict[str, str]:
    """The process env without inherited Airflow settings (AIRFLOW__*, AIRFLOW_CONFIG, ...),
    plus this stack's."""
    env = without_airflow_settings()
    url = f"http://127.0.0.1:{port}"
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        # The DAG files and pipeline configs do not change while the stack runs: parse each
        # once, not every 30 s (six files, about a second of CPU each, beside the tests).
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
        # An unanswered approval times out when the scheduler next looks for expired
        # deferrals (every 15 s by default): look every second, as the tests wait on it.
        AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL="1",
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
        SLMOPS_PIPELINES_DIR=str(root / "pipelines"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


# A config-driven DAG that retrains the tiny model when tones.jsonl's Asset gets an event
# (events may set only data files and splits, so the tiny settings are the DAG's own).
RETRAIN_DAG = "slm_e2e_retrain"


def retraining_pipelines(folder: Path) -> None:
    """The shipped pipeline configs plus RETRAIN_DAG's (SLMOPS_PIPELINES_DIR)."""
    import shutil

    import yaml

    from slmops.pipeline.configs.pipelines import PIPELINES_DIR
    from slmops.testing import tiny_pipeline_params

    shutil.copytree(PIPELINES_DIR, folder)
    spec = {
        "dag_id": RETRAIN_DAG,
        "description": "e2e: retrain the tiny tone model when its data changes",
        "on_data_change": True,
        "champion_challenger": True,
        "params": tiny_pipeline_params("e2e-retrained", require_approval=True),
    }
    (folder / "e2e_retrain.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")


@pytest.fixture(scope="session")
def retrain_dag() -> str:
    """The id of the config-driven DAG that retrains on tones.jsonl's Asset events."""
    return RETRAIN_DAG


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A running Airflow with the repository's DAGs, logged in as admin."""
    from slmops.testing import tiny_pipeline_data

    root = tmp_path_factory.mktemp("e2e")
    home = root / "airflow"
    home.mkdir()
    tiny_pipeline_data(root / "data")
    retraining_pipelines(root / "pipelines")
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
        stop_all(list(procs.values()))
