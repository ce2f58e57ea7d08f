"""Run folders as the stages leave them (with a real export) and the child process that
faults.py runs, for the fault-injection tests (imported by name, like run_folder.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from slmops.pipeline import locations
from slmops.pipeline.params import DEMO_PARAMS
from slmops.pipeline.plan import prepare

FAULTS = Path(__file__).with_name("faults.py")
TARGET = "cpu-fp32"


def gate(name: str) -> dict:
    return {"name": name, "passed": True, "explanation": f"{name} passed", "remedies": []}


def finished_run(artifacts: Path, run_id: str, export: Path) -> Path:
    """A passed cpu-fp32 run of DAG slm_finetune whose target folder is the real export."""
    data = artifacts.parent / "data"
    data.mkdir(exist_ok=True)
    (data / "tones.jsonl").write_text("{}\n")
    prepare(
        {**DEMO_PARAMS, "data_files": ["tones.jsonl"], "model_name": "tones", "targets": [TARGET]},
        dag_id="slm_finetune",
        run_id=run_id,
        artifacts_root=artifacts,
        data_roots=[data],
    )
    run = locations.run_dir(artifacts, "slm_finetune", run_id)
    fingerprint = {"fingerprint": "f" * 64}
    write_json(
        run / "validation/validation.json",
        {
            "passed": True,
            "data": {"train_rows": 72, "eval_rows": 24, **fingerprint},
            "checks": [{"name": "labels", "passed": True}],
        },
    )
    write_json(run / "finetune/training_metrics.json", {"method": "full", "dataset": fingerprint})
    write_json(
        run / "finetune/evaluation/evaluation.json",
        {
            "passed": True,
            "primary_metric": "accuracy",
            "eval_rows": 24,
            "models": {
                "base": {"metrics": {"accuracy": 0.3}},
                "fine_tuned": {"metrics": {"accuracy": 0.9}},
            },
            "gates": [gate("loss_gap")],
        },
    )
    shutil.copytree(export, run / "finetune/onnx" / TARGET)
    return run


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


class Child:
    """faults.py in a process of its own, stopped at ``pause`` (see faults.py)."""

    def __init__(self, tmp_path: Path, pause: str, *args: str, name: str = "child"):
        self.marker = tmp_path / f"{name}.paused"
        self.release = tmp_path / f"{name}.release"
        env = {**os.environ, "FAULT_MARKER": str(self.marker), "FAULT_RELEASE": str(self.release)}
        self.process = subprocess.Popen(
            [sys.executable, str(FAULTS), pause, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_paused(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"ended before its pause: {self.process.communicate()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("the child never reached its pause")
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def go_on(self) -> tuple[int, str, str]:
        self.release.touch()
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err
