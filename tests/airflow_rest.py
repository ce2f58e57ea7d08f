"""A client of a real Airflow's REST API, for the tests that start one (tests/e2e,
tests/cluster): log in, wait for a DAG to be parsed, trigger runs and wait for them, read
task instances; a failure shows the tails of the component logs and of the run's failed
tasks' logs."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

FINAL_STATES = {"success", "failed"}
ANSWER_AFTER_S = 10  # see AirflowRest.answer_approval


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


def quoted(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


class AirflowRest:
    """A running Airflow: its REST API, AIRFLOW_HOME (task logs) and artifacts root;
    ``component_logs`` are the logs a failure shows."""

    def __init__(
        self, url: str, home: Path, artifacts: Path, password: str, component_logs: list[Path]
    ):
        self.url, self.home, self.artifacts = url, home, artifacts
        self.password, self.component_logs = password, component_logs
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

    def page(
        self, path: str, *, logged_in: bool = True, accept: str = "text/html"
    ) -> tuple[int, dict, bytes]:
        """A GET as a browser would send it (redirects not followed): status, headers, body."""

        class _NoRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        headers = {"Accept": accept}
        if logged_in and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            with opener.open(
                urllib.request.Request(self.url + path, headers=headers), timeout=30
            ) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def login(self) -> None:
        body = {"username": "admin", "password": self.password}
        self.token = self.request("POST", "/auth/token", body)["access_token"]

    def check_alive(self) -> None:
        """Subclasses that own the processes fail fast when one died."""

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

    def task_instance_records(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's task instances as the REST API gives them (state, hostname, queue, try)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances"
        return self.request("GET", path)["task_instances"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{task_id or task_id[map_index]: state}`` of one run."""
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in self.task_instance_records(dag_id, run_id)
        }

    def trigger(self, dag_id: str, conf: dict) -> str:
        """The new run's id."""
        body = {"logical_date": None, "conf": conf}
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict:
        """The dag run once it has finished."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}"

        def finished():
            current = self.request("GET", path)
            return current if current["state"] in FINAL_STATES else None

        return self.wait(f"{dag_id} run {run_id} to finish", finished, timeout)

    def answer_approval(
        self, dag_id: str, run_id: str, option: str, reason: str = "", timeout: float = 600
    ) -> dict:
        """Wait until the run's approve task asks (state awaiting_input), then answer it
        ("Approve" or "Reject") as the logged-in user; the recorded response.

        It answers a few seconds after the request appears, as a person would: Airflow 3.3
        resumes an answered task at once, and when the answer lands before the scheduler
        has handled the executor's report on the process that parked the task (about a
        second later), it takes that report for a lost task and retries it: the new try
        asks again (seen in CI with an answer 0.5 s after the request)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances/approve/-1"
        self.wait(
            f"{dag_id} run {run_id} to ask for approval",
            lambda: self.task_instances(dag_id, run_id).get("approve") == "awaiting_input",
            timeout,
        )
        time.sleep(ANSWER_AFTER_S)
        body = {"chosen_options": [option], "params_input": {"reason": reason}}
        return self.request("PATCH", f"{path}/hitlDetails", body)

    def trigger_and_wait(self, dag_id: str, conf: dict, timeout: float = 600) -> dict:
        """Trigger ``dag_id`` with ``conf``; the finished dag run."""
        return self.wait_for_run(dag_id, self.trigger(dag_id, conf), timeout)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances/{task_id}"
        return json.dumps(self.request("GET", f"{path}/logs/{try_number}"))

    def diagnose(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        """Tails of the component logs, and of the run's unsuccessful tasks' logs."""
        parts = [tail(log) for log in self.component_logs]
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
