"""Run a DAG with ``dag.test()`` in a child process and read what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("dag_runner.py")
MARKER = "DAG-RESULT "
LOGICAL_DATE = "2026-11-29T10:00:00+00:00"


def run_dag(
    env: dict,
    artifacts: Path,
    conf: dict,
    dag_id: str = "slm_finetune",
    logical_date: str = LOGICAL_DATE,
) -> tuple[dict, str]:
    """Run ``dag_id`` with ``dag.test()``; its result line and the whole output."""
    command = [sys.executable, str(RUNNER), dag_id, json.dumps(conf), logical_date]
    env = {**env, "SLMOPS_ARTIFACTS_ROOT": str(artifacts)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    results = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert results, f"the DAG run printed no result (exit {done.returncode}):\n{output[-5000:]}"
    return json.loads(results[-1].removeprefix(MARKER)), output


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
