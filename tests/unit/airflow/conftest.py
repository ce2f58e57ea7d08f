"""Operator unit tests: each operator's ``execute()`` called directly with a small context.

The context holds what the operators read from a real task run: the DAG, the run id, the
params, Airflow's own outlet-event accessors and the triggering asset events. Roots come
from $SLMOPS_ARTIFACTS_ROOT / $SLMOPS_DATA_ROOTS (a private pair per test), and a run
folder is the one ``prepare`` plans plus the small JSON files the stages would write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_ID = "manual__2026-11-29T10:00:00+00:00"
DAG_ID = "slm_finetune"
DATA_FILE = "tones.jsonl"


@dataclass
class Roots:
    artifacts: Path
    data: Path

    @property
    def models(self) -> Path:
        return self.artifacts / "models"


@pytest.fixture(autouse=True)
def _task_runner_mode(monkeypatch):
    """Airflow's own test switch: execute() called outside the task runner, without the
    "cannot be called outside of the Task Runner" warning on every call."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    monkeypatch.setattr(ExecutorSafeguard, "test_mode", True)


@pytest.fixture(autouse=True)
def roots(tmp_path, monkeypatch) -> Roots:
    """A private artifacts root and a data root holding 48 tone rows as tones.jsonl; no
    Airflow Variables set, so the operators take the roots from the environment."""
    from slmops.pipeline.locations import ARTIFACTS_ENV, DATA_ROOTS_ENV
    from slmops.testing import tone_rows

    data = tmp_path / "data"
    data.mkdir()
    (data / DATA_FILE).write_text("".join(json.dumps(row) + "\n" for row in tone_rows(48)))
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv(ARTIFACTS_ENV, str(artifacts))
    monkeypatch.setenv(DATA_ROOTS_ENV, str(data))
    monkeypatch.setenv("SLMOPS_HOME", str(tmp_path / "slmops-home"))
    for name in ("SLMOPS_ARTIFACTS_ROOT", "SLMOPS_DATA_ROOTS"):
        monkeypatch.delenv(f"AIRFLOW_VAR_{name}", raising=False)
    return Roots(artifacts=artifacts.resolve(), data=data.resolve())


@pytest.fixture(scope="session")
def run_id() -> str:
    """The run id of ``context()`` and ``finished_run()`` unless they are given another."""
    return RUN_ID


@pytest.fixture(scope="session")
def json_file():
    """``json_file(path, data)``: write a small JSON file, making its folder."""
    return write_json


@pytest.fixture(scope="session")
def form() -> dict:
    """A run's params as a trigger form sends them: the tone rows of ``roots``, a
    {column} template, a label column, a quarter held out (36 + 12 rows); the rest left
    to the params' defaults."""
    from slmops.testing import TONE_TEMPLATE

    return {
        "model_name": "tones",
        "data_files": [DATA_FILE],
        "template_kind": "template",
        "text_template": TONE_TEMPLATE,
        "label_field": "tone",
        "eval_fraction": 0.25,
        "suite": "default",
    }


@pytest.fixture
def context():
    """A task's context as the operators read it: ``context(params=..., **more)``."""
    from airflow.sdk import DAG
    from airflow.sdk.execution_time.context import OutletEventAccessors

    def make(*, dag_id: str = DAG_ID, run_id: str = RUN_ID, params: dict | None = None, **more):
        return {
            "dag": DAG(dag_id, schedule=None),
            "run_id": run_id,
            "params": dict(params or {}),
            "outlet_events": OutletEventAccessors(),
            "triggering_asset_events": {},
            **more,
        }

    return make


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def gate(name: str, passed: bool) -> dict:
    return {"name": name, "passed": passed, "explanation": f"{name} explained", "remedies": []}


@pytest.fixture
def finished_run(roots, form):
    """A factory of run folders as the stages leave them, without any model:
    ``finished_run(run_id=..., passed=..., target=..., **params)`` plans the run with ``prepare``
    (model_name "tones", one target) and writes validation.json, training_metrics.json,
    an adapter, evaluation.json and the target's export.json, parity.json,
    benchmark.json and model.onnx. ``passed=False`` fails the evaluation gates and
    leaves no export (the run stopped at evaluate). Returns the run folder."""
    from slmops.layout import RunLayout
    from slmops.pipeline.plan import prepare

    def make(
        *,
        dag_id: str = DAG_ID,
        run_id: str = RUN_ID,
        passed: bool = True,
        target: str = "cpu-int4",
        fine_tuned: float = 0.98,
        **params,
    ) -> Path:
        plan = prepare(
            {**form, "targets": [target], **params},
            dag_id=dag_id,
            run_id=run_id,
            artifacts_root=roots.artifacts,
            data_roots=[roots.data],
        )
        run = RunLayout(plan["run_dir"])
        write_json(
            run.validation_report,
            {
                "passed": True,
                "data": {"train_rows": 36, "eval_rows": 12, "fingerprint": "f" * 64},
                "checks": [{"name": "labels", "passed": True}],
            },
        )
        training = run.finetune
        write_json(
            training.metrics,
            {"method": "lora", "global_step": 200, "dataset": {"fingerprint": "f" * 64}},
        )
        training.adapter.mkdir(parents=True)
        (training.adapter / "adapter_model.safetensors").write_bytes(b"weights")
        gates = [gate("loss_gap", True), gate("min_improvement", True)]
        if not passed:
            gates.append(gate("min_metric[accuracy]", False))
        write_json(
            training.evaluation_report,
            {
                "passed": passed,
                "primary_metric": "accuracy",
                "eval_rows": 12,
                "models": {
                    "base": {"metrics": {"accuracy": 0.05}},
                    "fine_tuned": {"metrics": {"accuracy": fine_tuned}},
                },
                "gates": gates,
                "samples": [
                    {
                        "prompt": f"<|im_start|>user\nphrase {row} | with a pipe<|im_end|>\n",
                        "reference": "joyful",
                        "base_answer": "",
                        "fine_tuned_answer": "joyful",
                    }
                    for row in range(12)
                ],
            },
        )
        if passed:
            export = training.onnx(target)
            write_json(
                export / "export.json",
                {
                    "passed": True,
                    "size_mb": 84.5,
                    "exporter": "onnxruntime-genai builder",
                    "gates": [gate(f"max_export_degradation[{target}]", True)],
                },
            )
            write_json(
                export / "parity.json",
                {
                    "primary_metric": "accuracy",
                    "pytorch": {"metrics": {"accuracy": fine_tuned}},
                    "exported": {"metrics": {"accuracy": fine_tuned - 0.01}},
                },
            )
            write_json(
                export / "benchmark.json",
                [{"kind": "onnx", "decode_tokens_per_s": 170.0, "decode_speedup": 6.1}],
            )
            (export / "model.onnx").write_bytes(b"onnx")
        return run.root

    return make
