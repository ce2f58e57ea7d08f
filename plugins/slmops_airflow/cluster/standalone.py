"""`make airflow`: what `airflow standalone` starts, listening on 127.0.0.1 only.

`airflow standalone` binds its api-server to [api] host, but the log servers that its
scheduler and triggerer start listen on every interface, and no setting changes that
(airflow.utils.serve_logs passes host=""). So this starts the same four components itself:
the api-server on 127.0.0.1 (or SLMOPS_BIND_ADDRESS, to serve other machines on purpose),
the scheduler and triggerer without log servers (the api-server reads the task logs from
AIRFLOW_HOME's files, as in the native cluster), and the dag-processor. The admin password
is made first (standalone_auth). Their output is interleaved with the component's name;
when one exits, or on SIGTERM / Ctrl-C, the others are stopped.

    python -m slmops_airflow.cluster.standalone --passwords FILE [--port 8080]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from slmops_airflow.cluster.standalone_auth import (
    PASSWORD_VARIABLE,
    describe,
    ensure_admin_password,
)

BIND_VARIABLE = "SLMOPS_BIND_ADDRESS"
DEFAULT_HOST = "127.0.0.1"


def component_commands(host: str, port: int) -> dict[str, list[str]]:
    """The argv of each component: nothing listens beyond ``host``."""
    return {
        "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
        "dag-processor": ["airflow", "dag-processor"],
        "api-server": ["airflow", "api-server", "--host", host, "--port", str(port)],
        "triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
    }


def component_env(base: dict[str, str], host: str, port: int) -> dict[str, str]:
    """Airflow settings standalone would force (a local executor, SimpleAuthManager), and
    the Task Execution API at the address the api-server really listens on."""
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return {
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{reach}:{port}/execution/",
        **base,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
    }


def _forward(name: str, stream) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        print(f"{name:<13} | {line}", flush=True)


def run_components(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Start every component; return when one exits or a stop signal arrives, after
    stopping the rest."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    processes: dict[str, subprocess.Popen] = {}
    for name, argv in commands.items():
        processes[name] = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=_forward, args=(name, processes[name].stdout), daemon=True).start()
    exited = None
    while exited is None and not stopping.is_set():
        exited = next((n for n, p in processes.items() if p.poll() is not None), None)
        time.sleep(0.2)
    if exited is not None:
        print(f"{exited} exited with {processes[exited].returncode}: stopping the others")
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 30
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return 0 if exited is None else (processes[exited].returncode or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slmops_airflow.cluster.standalone")
    parser.add_argument("--passwords", type=Path, required=True, help="SimpleAuthManager file")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    host = os.environ.get(BIND_VARIABLE) or DEFAULT_HOST
    admin = ensure_admin_password(args.passwords, os.environ.get(PASSWORD_VARIABLE))
    print(describe(admin), flush=True)
    print(f"Airflow UI: http://{host}:{args.port} (Ctrl-C stops every component)", flush=True)
    env = component_env(dict(os.environ), host, args.port)
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(args.passwords.resolve())
    return run_components(component_commands(host, args.port), env)


if __name__ == "__main__":
    sys.exit(main())
