"""A run folder as the stages leave it, shared by the pipeline tests (run_folder.py and
the ``run_dir`` fixture)."""

from __future__ import annotations

import json

from slmops.pipeline import locations
from slmops.pipeline.params import DEMO_PARAMS
from slmops.pipeline.plan import prepare

RUN_ID = "manual__2026-11-29T10:00:00+00:00"


def gate(name: str, passed: bool) -> dict:
    return {"name": name, "passed": passed, "explanation": f"{name} explained", "remedies": []}


def finished_run(tmp_path):
    """A finished cpu-int4 run: what validate, finetune, evaluate and optimize write."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "tones.jsonl").write_text("{}\n")
    plan = prepare(
        {**DEMO_PARAMS, "data_files": ["tones.jsonl"], "model_name": "tones"},
        dag_id="slm_finetune",
        run_id=RUN_ID,
        artifacts_root=tmp_path / "artifacts",
        data_roots=[data],
    )
    run = locations.run_dir(tmp_path / "artifacts", "slm_finetune", RUN_ID)
    assert plan["run_dir"] == str(run)
    write_json(
        run / "validation/validation.json",
        {
            "passed": True,
            "data": {"train_rows": 567, "eval_rows": 63, "fingerprint": "f" * 64},
            "checks": [{"name": "labels", "passed": True}],
        },
    )
    write_json(
        run / "finetune/training_metrics.json",
        {"method": "lora", "global_step": 200, "dataset": {"fingerprint": "f" * 64}},
    )
    (run / "finetune/adapter").mkdir()
    (run / "finetune/adapter/adapter_model.safetensors").write_bytes(b"weights")
    write_json(
        run / "finetune/evaluation/evaluation.json",
        {
            "passed": True,
            "primary_metric": "accuracy",
            "eval_rows": 63,
            "models": {
                "base": {"metrics": {"accuracy": 0.05}},
                "fine_tuned": {"metrics": {"accuracy": 0.98}},
            },
            "gates": [gate("loss_gap", True), gate("min_improvement", True)],
        },
    )
    target = run / "finetune/onnx/cpu-int4"
    write_json(
        target / "export.json",
        {
            "passed": True,
            "size_mb": 84.5,
            "exporter": "onnxruntime-genai builder",
            "gates": [gate("max_export_degradation[cpu-int4]", True)],
        },
    )
    write_json(
        target / "parity.json",
        {
            "primary_metric": "accuracy",
            "pytorch": {"metrics": {"accuracy": 0.98}},
            "exported": {"metrics": {"accuracy": 0.97}},
        },
    )
    write_json(
        target / "benchmark.json",
        [{"kind": "onnx", "decode_tokens_per_s": 170.0, "decode_speedup": 6.1}],
    )
    (target / "model.onnx").write_bytes(b"onnx")
    return run


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
