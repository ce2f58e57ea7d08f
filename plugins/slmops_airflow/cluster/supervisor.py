"""The supervisor: starts the stack in order, restarts what exits (compose's
``restart: always``), records every PID in state.json, and stops its whole tree.

    postgres, redis -> db migrate -> api-server, scheduler, dag-processor, triggerer,
    worker-cpu (queue default), worker-gpu (queue gpu)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from slmops_airflow.cluster import services
from slmops_airflow.cluster.errors import ClusterError
from slmops_airflow.cluster.processes import (
    Component,
    ProcessId,
    alive,
    become_subreaper,
    reap_orphans,
    stop_tree,
)
from slmops_airflow.cluster.settings import (
    GPU_QUEUE,
    GPU_QUEUE_ON_CPU,
    GPU_WORKER_CONCURRENCY,
    HOST,
    ClusterSettings,
    Secrets,
    airflow_env,
)

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
WORKERS = ("worker-cpu", "worker-gpu")
_HEALTHY_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
_MAX_BACKOFF = 30.0


def check_folder(settings: ClusterSettings) -> None:
    """A cluster folder whose secrets file is gone cannot open its own database."""
    if (settings.folder / "postgres").is_dir() and not (settings.folder / "secrets.json").is_file():
        raise ClusterError(
            f"{settings.folder / 'secrets.json'} is gone but the database it opens is "
            f"still in {settings.folder / 'postgres'}: restore the file, or remove "
            f"{settings.folder} to start over (its runs' history goes with it)"
        )


class Supervisor:
    def __init__(self, settings: ClusterSettings, log=print):
        self.settings = settings
        self.log = log
        self.stopping = threading.Event()
        self.components: dict[str, Component] = {}
        self.ready = False
        self.login = ""

    # ---- start -----------------------------------------------------------------------
    def start(self) -> None:
        settings = self.settings
        check_folder(settings)
        become_subreaper()
        for folder in (settings.folder, settings.logs, settings.airflow_home):
            folder.mkdir(parents=True, exist_ok=True)
        settings.artifacts_root.mkdir(parents=True, exist_ok=True)
        keys = Secrets.load_or_create(settings.folder)
        pg_bin, redis_server = services.ensure_installed(settings.logs / "install.log")
        self._seed_passwords()

        services.init_postgres(
            pg_bin, settings.folder / "postgres", keys.postgres_password, self._log_of("initdb")
        )
        self._add(
            services.postgres(
                pg_bin,
                settings.folder / "postgres",
                settings.postgres_port,
                self._log_of("postgres"),
                settings.folder,
            )
        )
        self._add(
            services.redis(
                redis_server,
                settings.folder / "redis",
                settings.redis_port,
                keys.redis_password,
                self._log_of("redis"),
            )
        )
        pg_password = keys.postgres_password
        self._wait(
            "PostgreSQL", lambda: services.postgres_ready(settings.postgres_port, pg_password)
        )
        self._wait("Redis", lambda: services.redis_ready(settings.redis_port, keys.redis_password))
        services.create_database(settings.postgres_port, keys.postgres_password)

        env = airflow_env(settings, keys)
        self._migrate(env)
        for name in AIRFLOW_COMPONENTS:
            self._add(self._airflow(name, env))
        for name in WORKERS:
            self._add(self._worker(name, env))
        self._wait("the api-server and the scheduler", self._healthy, timeout=300)
        for name in WORKERS:
            self._wait(f"Celery {name}", lambda n=name: self._worker_ready(n), timeout=180)
        self.ready = True
        self._write_state()
        self.log(f"cluster ready: {settings.url}; {self.login}")

    def _add(self, component: Component) -> None:
        self.components[component.name] = component
        component.start()
        self._write_state()

    def _log_of(self, name: str) -> Path:
        return self.settings.logs / f"{name}.log"

    def _seed_passwords(self) -> None:
        """The admin password: SLMOPS_ADMIN_PASSWORD, the one kept from an earlier start,
        or a random one shown this once (never admin/admin)."""
        from slmops_airflow.cluster.standalone_auth import describe, ensure_admin_password

        admin = ensure_admin_password(
            self.settings.airflow_home / "passwords.json", os.environ.get("SLMOPS_ADMIN_PASSWORD")
        )
        self.login = describe(admin)

    def _migrate(self, env: dict[str, str]) -> None:
        """Airflow's schema, like compose's one-shot airflow-init (idempotent)."""
        self.log("airflow db migrate")
        log = self._log_of("db-migrate")
        with log.open("ab") as out:
            done = subprocess.run(
                ["airflow", "db", "migrate"],
                env=env,
                cwd=self.settings.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode:
            raise ClusterError(f"airflow db migrate failed; see {log}")

    def _airflow(self, name: str, env: dict[str, str]) -> Component:
        args = {
            "api-server": ["--host", HOST, "--port", str(self.settings.api_port)],
            # Logs are files in the shared AIRFLOW_HOME that the api-server reads; a log
            # server would listen on 0.0.0.0.
            "scheduler": ["--skip-serve-logs"],
            "triggerer": ["--skip-serve-logs"],
        }.get(name, [])
        return Component(
            name=name,
            argv=["airflow", name, *args],
            env=env,
            log=self._log_of(name),
            cwd=self.settings.folder,
        )

    def _worker(self, name: str, env: dict[str, str]) -> Component:
        gpu = name == "worker-gpu"
        env = {**env, "SLMOPS_WORKER_NAME": name}
        args = ["--queues", GPU_QUEUE if gpu else "default", "--skip-serve-logs"]
        args += ["--celery-hostname", f"{name}@%h"]
        if gpu:
            args += ["--concurrency", str(GPU_WORKER_CONCURRENCY)]
            if self.settings.gpu_worker_on_cpu:
                env[GPU_QUEUE_ON_CPU] = "1"
        return Component(
            name=name,
            argv=["airflow", "celery", "worker", *args],
            env=env,
            log=self._log_of(name),
            cwd=self.settings.folder,
        )

    # ---- health ----------------------------------------------------------------------
    def _wait(self, what: str, probe, timeout: float = 120) -> None:
        self.log(f"waiting for {what}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise ClusterError("stopped while starting")
            dead = [c.name for c in self.components.values() if c.exit_code() is not None]
            if dead:
                logs = ", ".join(str(self._log_of(name)) for name in dead)
                raise ClusterError(f"{', '.join(dead)} exited while starting; see {logs}")
            try:
                if probe():
                    return
            except OSError:
                pass
            time.sleep(1)
        raise ClusterError(f"{what} not ready after {timeout:.0f} s; see {self.settings.logs}")

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.settings.url}/api/v2/monitor/health", timeout=5) as r:
            health = json.loads(r.read())
        return all((health.get(part) or {}).get("status") == "healthy" for part in _HEALTHY_PARTS)

    def _worker_ready(self, name: str) -> bool:
        """Celery logs `NAME@host ready.` once it consumes its queue."""
        component = self.components[name]
        since_start = component.log.read_text(encoding="utf-8", errors="replace").rpartition(
            "==== "
        )[2]
        return f"{name}@" in since_start and " ready." in since_start

    # ---- run -------------------------------------------------------------------------
    def watch(self) -> None:
        """Until stopped: restart every component that exits, with a growing pause for
        one that keeps failing (reset after a minute up)."""
        backoff: dict[str, float] = {}
        due: dict[str, float] = {}
        while not self.stopping.wait(1.0):
            reap_orphans({c.pid for c in self.components.values() if c.pid})
            for component in list(self.components.values()):
                code = component.exit_code()
                if code is None or not component.restart:
                    continue
                now, name = time.monotonic(), component.name
                if name not in due:
                    pause = min(backoff.get(name, 0.5) * 2, _MAX_BACKOFF)
                    if now - component.started_at > 60:
                        pause = 1.0  # it had been up a while: not a crash loop
                    backoff[name], due[name] = pause, now + pause
                    self.log(f"{name} exited with {code}; restarting in {pause:.0f} s")
                elif now >= due[name]:
                    del due[name]
                    component.restarts += 1
                    process = component.start()
                    self.log(f"{name} started again (PID {process.pid})")
                    self._write_state()

    # ---- stop ------------------------------------------------------------------------
    def stop(self) -> None:
        """Workers and Airflow first (a warm Celery shutdown waits for running tasks up to
        the grace period), then Redis and PostgreSQL, then any orphan left in the tree."""
        self.stopping.set()
        order = [*WORKERS, *reversed(AIRFLOW_COMPONENTS), "redis", "postgres"]
        for group in (order[:6], order[6:]):
            threads = [
                threading.Thread(target=self.components[name].stop, kwargs={"grace": 30})
                for name in group
                if name in self.components
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        me = psutil.Process()
        for orphan in alive(me.children(recursive=True)):
            stop_tree(orphan, grace=5)
        reap_orphans(set())
        self.settings.state_file.unlink(missing_ok=True)
        self.log("cluster stopped")

    def _write_state(self) -> None:
        state = {
            "supervisor": ProcessId.of(os.getpid()).__dict__,
            "url": self.settings.url,
            "ready": self.ready,
            "components": {},
        }
        for name, component in self.components.items():
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended just now
                if component.pid and component.running():
                    state["components"][name] = ProcessId.of(component.pid).__dict__
        partial = self.settings.state_file.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=1), encoding="utf-8")
        partial.replace(self.settings.state_file)


def run_supervisor(settings: ClusterSettings) -> int:
    """``supervise``: start, watch, and stop on SIGTERM / SIGINT (also while starting)."""
    supervisor = Supervisor(settings, log=lambda text: print(time.strftime("%T"), text, flush=True))

    def on_signal(signum, _frame):
        supervisor.log(f"got {signal.Signals(signum).name}; stopping")
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        supervisor.start()
        supervisor.watch()
        return 0
    except ClusterError as exc:
        if not supervisor.stopping.is_set():
            supervisor.log(f"error: {exc}")
            return 1
        return 0
    finally:
        supervisor.stop()
