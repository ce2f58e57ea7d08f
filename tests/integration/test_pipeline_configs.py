"""The shipped pipeline configs plan and validate as shipped, and `slmops run --config`
runs a whole pipeline without Airflow: the reference guide's Olive-style config (its
GPT-2 module names mapped to a Llama) and our own pipeline config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slmops.layout import ModelStore
from slmops.pipeline import locations, stages
from slmops.pipeline.configs.pipelines import PIPELINES_DIR, load_pipelines
from slmops.pipeline.model_versions import version_name
from slmops.pipeline.plan import prepare
from slmops.testing import GUIDE_OLIVE_CONFIG

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The reference guide's olive-config.yaml, with its model and data pointed at local
# files; `training_args` (an Olive LoRA pass setting) makes the tiny model learn.
LOCAL_OLIVE_CONFIG = (
    GUIDE_OLIVE_CONFIG.replace("microsoft/DialoGPT-medium", "model").replace(
        "path/to/your/dataset.json", "dataset.json"
    )
    + "      training_args:\n        learning_rate: 0.02\n        max_steps: 120\n"
)


@pytest.mark.parametrize("name", ["tone", "instructions"])
def test_shipped_configs_plan_and_their_data_passes_its_suite(name, tmp_path):
    specs = {path.stem: (dag_id, spec) for dag_id, (path, spec) in load_pipelines().items()}
    dag_id, spec = specs[name]
    plan = prepare(
        spec.param_defaults(),
        dag_id=dag_id,
        run_id="check",
        artifacts_root=tmp_path,
        data_roots=locations.data_roots(),
    )
    if name == "tone":
        assert plan["cpu_targets"] == ["cpu-int4", "cpu-int8"] and plan["gpu_targets"] == []
        assert plan["finetune"]["method"] == "lora" and not plan["train_on_gpu"]
        assert spec.champion_challenger
    else:
        assert plan["finetune"]["method"] == "qlora" and plan["train_on_gpu"]
        assert plan["gpu_targets"] == ["gpu-int4"] and plan["cpu_targets"] == ["cpu-int4"]
    checked = stages.validate(plan["validation"])
    assert checked["passed"] and checked["train_rows"] >= 100


def run_config(config: Path, artifacts: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "slmops", "run", "--config", str(config)]
    command += ["--artifacts_root", str(artifacts), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=config.parent)


def test_run_config_runs_the_guides_olive_config(tmp_path):
    from slmops.testing import build_tiny_llama, instruction_rows

    build_tiny_llama(tmp_path / "model", initializer_range=0.3)
    (tmp_path / "dataset.json").write_text(json.dumps(instruction_rows(60)))
    config = tmp_path / "olive-config.yaml"
    config.write_text(LOCAL_OLIVE_CONFIG)

    done = run_config(config, tmp_path / "artifacts", "--run_id", "olive")
    assert done.returncode == 0, done.stderr[-4000:]
    # The guide's GPT-2 names, mapped onto the Llama at hand, each said out loud.
    assert "c_attn -> q_proj, k_proj, v_proj (GPT-2 name; this model has no c_attn)" in done.stderr
    assert "c_proj -> o_proj, down_proj" in done.stderr
    assert "ln_f -> norm" in done.stderr
    assert "run olive: PASS" in done.stdout

    run = locations.run_dir(tmp_path / "artifacts", "slm_olive-config", "olive")
    plan = json.loads((run / "plan.json").read_text())
    training = plan["finetune"]
    assert training["method"] == "lora" and training["lora_r"] == 16
    assert training["lora_alpha"] == 32 and training["max_steps"] == 120
    assert training["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
    assert training["modules_to_save"] == ["norm", "lm_head"]
    assert training["text_template"] == "User: {input}\nAssistant: {output}"
    adapter = json.loads((run / "finetune" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and set(adapter["target_modules"]) == set(training["target_modules"])
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert set(summary["stages"].values()) == {"PASS"}
    published = ModelStore(tmp_path / "artifacts/models").latest_version("model-lora")
    assert published.name == version_name("slm_olive-config", "olive")
    assert f"published: {published}" in done.stdout


def test_run_config_names_the_olive_key_of_an_absent_module(tmp_path):
    from slmops.testing import build_tiny_llama, instruction_rows

    build_tiny_llama(tmp_path / "model")
    (tmp_path / "dataset.json").write_text(json.dumps(instruction_rows(20)))
    config = tmp_path / "olive-config.yaml"
    config.write_text(LOCAL_OLIVE_CONFIG.replace('["c_attn", "c_proj"]', '["c_attn", "conv1"]'))
    done = run_config(config, tmp_path / "artifacts")
    assert done.returncode == 1
    assert f"{config}: passes.lora.config.target_modules" in done.stderr
    assert "conv1" in done.stderr and "q_proj" in done.stderr  # what the model has instead
    assert not (tmp_path / "artifacts").exists()  # refused before a run folder was made


def test_run_config_runs_a_pipeline_config_and_keeps_a_better_champion(tmp_path):
    from slmops.testing import tiny_pipeline_data, tiny_pipeline_params

    tiny_pipeline_data(tmp_path / "data")
    params = tiny_pipeline_params("local-tones", model_name_or_path="data/tiny")
    params["data_files"] = ["data/tones.jsonl"]
    config = tmp_path / "tones.yaml"
    config.write_text(yaml.safe_dump({"champion_challenger": True, "params": params}))
    artifacts = tmp_path / "artifacts"

    first = run_config(config, artifacts, "--run_id", "first")
    assert first.returncode == 0, first.stderr[-4000:]
    assert "promote: no champion" in first.stdout
    second = run_config(config, artifacts, "--run_id", "second")
    assert second.returncode == 0, second.stderr[-4000:]
    assert "keep: on the same 24 eval rows (cpu-fp32)" in second.stdout
    assert "run second is not published" in second.stderr
    latest = json.loads((artifacts / "models" / "local-tones" / "latest.json").read_text())
    assert latest["version"] == version_name("slm_tones", "first")


def test_shipped_pipeline_folder_has_the_two_examples():
    assert sorted(path.name for path in PIPELINES_DIR.glob("*.yaml")) == [
        "instructions.yaml",
        "tone.yaml",
    ]
