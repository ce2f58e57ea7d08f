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
