"""Helpers of the tracking tests: the tracked run's folder, clones of it, an MLflow client."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

RUN_ID = "manual__1"


def run_dir(root: Path, run_id: str = RUN_ID) -> Path:
    return root / "runs" / "slm_finetune" / run_id


def clone_run(root: Path, run_id: str, into: Path | None = None) -> Path:
    """A copy of the tracked run as run ``run_id`` (in artifacts root ``into``, default
    the same), its plan's paths and ids rewritten, its tracking record dropped."""
    into = into or root
    source = run_dir(root)
    target = run_dir(into, run_id)
    shutil.copytree(source, target, symlinks=True)
    plan = (target / "plan.json").read_text(encoding="utf-8")
    plan = plan.replace(str(source), str(target)).replace(str(root), str(into))
    plan = json.loads(plan.replace(f'"{RUN_ID}"', f'"{run_id}"'))
    (target / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    (target / "tracking.json").unlink(missing_ok=True)
    return target


def client_for(root: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def closed_port() -> int:
    """A local port nobody listens on (the tracker that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
