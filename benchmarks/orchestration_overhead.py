"""Orchestration overhead: one tiny pipeline three ways, one after the other in one run.

1. ``slmops run --config`` (one process, no Airflow);
2. ``airflow dags test slm_finetune`` (SQLite, no scheduler: every task in one process);
3. slm_finetune triggered over REST on the native CeleryExecutor cluster
   (``python -m slmops_airflow.cluster up``: PostgreSQL, Redis, two Celery workers).

Same settings each time (``slmops.testing.tiny_pipeline_params``: the tiny model, 96 tone
rows, 60 steps of full fine-tuning, a cpu-fp32 export with parity, no benchmark). Printed:
the wall time of each and its ratio to ``slmops run``; for Celery also the cluster's start
time and the DAG run's own start->end time (without the REST polling).

    python benchmarks/orchestration_overhead.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' REST client

from airflow_rest import AirflowRest, free_port  # noqa: E402

from slmops.testing import tiny_pipeline_data, tiny_pipeline_params  # noqa: E402

PYTHON = sys.executable
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        SLMOPS_DATA_ROOTS=str(root / "data"),
        SLMOPS_TRACKING="off",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


def _timed(argv: list[str], env: dict, log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(argv[:4])} failed ({done.returncode}); see {log}")
    return elapsed


def local_run(root: Path, params: dict) -> float:
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"description": "benchmark", "params": params}))
    argv = [PYTHON, "-m", "slmops", "run", "--config", str(config)]
    argv += ["--artifacts_root", str(root / "local")]
    return _timed(argv, _env(root), root / "local.log")


def dags_test(root: Path, params: dict, tree: Path = REPO) -> float:
    """``airflow dags test slm_finetune``; ``tree``: the checkout whose dags/, plugins/ and
    include/ run (another commit's worktree, for a before/after ratio)."""
    home = root / "airflow"
    extra = {} if tree == REPO else {"PYTHONPATH": f"{tree / 'plugins'}:{tree / 'include'}"}
    env = _env(
        root,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(tree / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(tree / "plugins"),
        SLMOPS_ARTIFACTS_ROOT=str(root / "dags-test"),
        **extra,
    )
    _timed([AIRFLOW, "db", "migrate"], env, root / "migrate.log")  # not counted
    argv = [AIRFLOW, "dags", "test", "slm_finetune", "--conf", json.dumps(params)]
    return _timed(argv, env, root / "dags-test.log")


def celery(root: Path, params: dict) -> tuple[float, float, float]:
    """(cluster start, trigger -> finished as seen over REST, the run's start -> end)."""
    port, password = free_port(), "benchmark"
    folder = root / ".cluster"
    env = _env(root, SLMOPS_ADMIN_PASSWORD=password)
    up = [PYTHON, "-m", "slmops_airflow.cluster", "up", f"--folder={folder}"]
    up += [f"--artifacts_root={root / 'celery'}", f"--api_port={port}"]
    up += [f"--postgres_port={free_port()}", f"--redis_port={free_port()}"]
    up += [
        f"--data_roots={root / 'data'}",
        "--set=AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False",
    ]
    try:
        start = _timed(up, env, root / "cluster-up.log")
        logs = [folder / "logs" / "scheduler.log", folder / "logs" / "worker-cpu.log"]
        stack = AirflowRest(f"http://127.0.0.1:{port}", folder / "airflow", root, password, logs)
        stack.login()
        stack.ready_dag("slm_finetune")
        started = time.perf_counter()
        run = stack.trigger_and_wait("slm_finetune", params, timeout=1800)
        seen = time.perf_counter() - started
        if run["state"] != "success":
            sys.exit("the Celery run failed:\n" + stack.diagnose("slm_finetune", run["dag_run_id"]))
        own = _seconds(run["end_date"]) - _seconds(run["start_date"])
        return start, seen, own
    finally:
        subprocess.run(
            [PYTHON, "-m", "slmops_airflow.cluster", "down", f"--folder={folder}"],
            cwd=REPO,
            capture_output=True,
        )


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main() -> None:
    # /tmp, mode 0755: as root, PostgreSQL runs as user postgres and must enter the folder.
    root = Path(tempfile.mkdtemp(prefix="slmops-overhead-", dir="/tmp"))
    root.chmod(0o755)
    try:
        tiny_pipeline_data(root / "data")
        params = tiny_pipeline_params("overhead")
        local = local_run(root, params)
        test = dags_test(root, params)
        start, seen, own = celery(root, params)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'way':<44} {'wall s':>8} {'x slmops run':>13}")
    for name, seconds in (
        ("slmops run --config (one process)", local),
        ("airflow dags test slm_finetune", test),
        ("CeleryExecutor, trigger -> success (REST)", seen),
        ("CeleryExecutor, the DAG run's start -> end", own),
    ):
        print(f"{name:<44} {seconds:8.1f} {seconds / local:13.2f}")
    print(f"(cluster start, not counted above: {start:.1f} s)")


if __name__ == "__main__":
    main()
