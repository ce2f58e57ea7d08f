"""`make airflow` runs `airflow standalone` under `python -m slmops_airflow.cluster run`:
a SIGTERM or a Ctrl-C (SIGINT) to it stops standalone's whole tree (scheduler, api-server,
dag-processor, triggerer and what they started). `airflow standalone` alone leaves them
running as orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from airflow_rest import free_port, tail

from slmops_airflow.cluster.processes import alive
from slmops_airflow.cluster.settings import without_airflow_settings

pytestmark = pytest.mark.cluster

COMPONENTS = ("scheduler", "api-server", "dag-processor", "triggerer")


@pytest.fixture(scope="module")
def standalone_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("standalone")
    env = without_airflow_settings()
    env.update(
        PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(free_port()),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__TRIGGERER__TRIGGERER_LOG_SERVER_PORT=str(free_port()),
    )
    return home, env


def _components(tree: list[psutil.Process]) -> set[str]:
    found = set()
    for process in tree:
        try:
            found.update(name for name in COMPONENTS if name in process.cmdline())
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_stops_standalone_and_every_process_it_started(standalone_env, sig):
    home, env = standalone_env
    log = home / f"standalone-{sig.name}.log"
    with log.open("w") as out:
        wrapper = subprocess.Popen(
            [sys.executable, "-m", "slmops_airflow.cluster", "run", "--", "airflow", "standalone"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        tree: list[psutil.Process] = []
        while time.monotonic() < deadline and wrapper.poll() is None:
            tree = psutil.Process(wrapper.pid).children(recursive=True)
            if _components(tree) == set(COMPONENTS):
                break
            time.sleep(1)
        assert _components(tree) == set(COMPONENTS), f"standalone did not start\n{tail(log)}"
        time.sleep(5)  # let them start children of their own (executor, log servers)
        tree = psutil.Process(wrapper.pid).children(recursive=True)

        wrapper.send_signal(sig)
        assert wrapper.wait(120) == 128 + sig, tail(log)
        psutil.wait_procs(tree, timeout=30)
        described = [" ".join(p.cmdline()[:4]) for p in alive(tree)]
        assert not described, f"left running after {sig.name}: {described}"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
