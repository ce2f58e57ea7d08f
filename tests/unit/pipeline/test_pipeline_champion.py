"""Champion / challenger on the eval set evaluate stored: the same decision and scores as
on the set built again from the data."""

from __future__ import annotations

import json
import shutil

from slmops.evaluation import eval_set
from slmops.evaluation.config import config_for_run
from slmops.export.optimize import optimize
from slmops.layout import ModelStore, RunLayout
from slmops.pipeline.champion import challenge


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_champion_scores_are_the_same_on_the_stored_eval_set(tone_run, tiny_model_dir, tmp_path):
    run = RunLayout(tmp_path / "run")
    skip = shutil.ignore_patterns("checkpoints", "evaluation", "onnx")
    shutil.copytree(tone_run, run.finetune.root, ignore=skip)
    # The challenger: this run's fine-tuned model; the champion: the untrained base.
    run.onnx().mkdir()
    optimize(run.finetune.merged, "cpu-fp32", run.onnx("cpu-fp32"), parity=False, benchmark=False)
    store = ModelStore(tmp_path / "models")
    version = store.version("tones", "v1")
    optimize(tiny_model_dir, "cpu-fp32", tmp_path / "base", parity=False, benchmark=False)
    shutil.copytree(tmp_path / "base", ModelStore.onnx(version, "cpu-fp32"))
    _write(ModelStore.manifest(version), {"version": "v1", "metrics": {"fine_tuned": 0.1}})
    _write(store.latest("tones"), {"path": str(version)})
    _write(
        run.plan,
        {
            "run_id": "second",
            "model_name": "tones",
            "models_root": str(store.root),
            "params": {"promotion_margin": 0.01},
            "cpu_targets": ["cpu-fp32"],
            "evaluate": {"run_path": str(run.finetune.root)},
        },
    )

    built = challenge(run.root)
    plan = eval_set.build(config_for_run(run.finetune.root))
    eval_set.store(plan, run.finetune.eval_set)
    logs = []
    stored = challenge(run.root, log=logs.append)
    assert any("rows evaluate stored" in line for line in logs)
    assert stored == built
    assert built["decision"] == "promote" and built["eval_rows"] == 24
    assert built["challenger"]["metric"] > 0.8 > built["champion"]["metric"]


def _plan(run, store, **fields):
    _write(
        run.plan,
        {
            "dag_id": "slm_retrain",
            "run_id": "second",
            "model_name": "tones",
            "models_root": str(store.root),
            "params": {"promotion_margin": 0.01},
            "cpu_targets": ["cpu-fp32"],
            "gpu_targets": [],
            "evaluate": {"run_path": str(run.finetune.root)},
            **fields,
        },
    )


def _published(store, version="v1", target="cpu-fp32"):
    folder = store.version("tones", version)
    ModelStore.onnx(folder, target).mkdir(parents=True)
    _write(ModelStore.manifest(folder), {"version": version, "metrics": {"fine_tuned": 0.9}})
    _write(store.latest("tones"), {"version": version, "path": f"tones/versions/{version}"})
    return folder


def test_a_run_with_only_gpu_targets_keeps_the_champion(tmp_path):
    """Nothing to score on CPU: the champion stays (it used to be replaced unchallenged)."""
    run, store = RunLayout(tmp_path / "run"), ModelStore(tmp_path / "models")
    _published(store)
    _plan(run, store, cpu_targets=[], gpu_targets=["gpu-int4"])
    _write(run.onnx("gpu-int4") / "export.json", {"passed": True})
    decision = challenge(run.root)
    assert decision["decision"] == "keep"
    assert "no CPU target that passed (targets: gpu-int4)" in decision["reason"]
    assert decision["champion"] == {"version": "v1", "path": "tones/versions/v1"}
    assert json.loads(run.decision.read_text()) == decision


def test_a_champion_without_a_common_target_is_kept(tmp_path):
    run, store = RunLayout(tmp_path / "run"), ModelStore(tmp_path / "models")
    _published(store, target="cpu-int4")
    _plan(run, store)
    _write(run.onnx("cpu-fp32") / "export.json", {"passed": True})
    decision = challenge(run.root)
    assert decision["decision"] == "keep"
    assert "no CPU target in common" in decision["reason"] and "(cpu-int4)" in decision["reason"]


def test_latest_pointing_at_a_missing_version_keeps_the_champion(tmp_path):
    """latest.json names a version whose folder is gone: fail closed, say what to do."""
    run, store = RunLayout(tmp_path / "run"), ModelStore(tmp_path / "models")
    shutil.rmtree(_published(store))
    _plan(run, store)
    _write(run.onnx("cpu-fp32") / "export.json", {"passed": True})
    decision = challenge(run.root)
    assert decision["decision"] == "keep"
    assert decision["champion"]["version"] == "v1"
    assert "is gone or incomplete" in decision["reason"]
    assert "restore the folder" in decision["reason"]


def test_latest_in_the_old_absolute_form_is_still_read(tmp_path):
    """Stores written before latest.json was relative: an absolute path, also after the
    store moved (the version name under the new root)."""
    store = ModelStore(tmp_path / "models")
    folder = _published(store)
    _write(store.latest("tones"), {"version": "v1", "path": str(folder)})
    assert store.latest_version("tones") == folder
    _write(store.latest("tones"), {"version": "v1", "path": "/elsewhere/models/tones/versions/v1"})
    assert store.latest_version("tones") == folder
    _write(store.latest("tones"), {"version": "v2", "path": "tones/versions/v2"})
    assert store.latest_version("tones") is None and store.latest_named("tones").name == "v2"
