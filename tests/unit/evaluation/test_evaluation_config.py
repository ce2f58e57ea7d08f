"""EvaluateConfig, gate thresholds and settings taken from a fine-tuning run."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from slmops.errors import ConfigError
from slmops.evaluation.config import (
    EvaluateConfig,
    GateThresholds,
    config_for_run,
    defaults_from_run,
    parse_thresholds,
)


@pytest.fixture
def run_dir(tmp_path):
    """A run folder holding only what evaluation reads from it: training_metrics.json."""
    folder = tmp_path / "run"
    folder.mkdir()
    config = {
        "model_name_or_path": "tiny",
        "data_files": ["rows.jsonl"],
        "text_template": "{phrase} -> {tone}",
        "label_field": "tone",
        "max_seq_len": 96,
        "seed": 7,
        "lora_r": 8,
        "trust_remote_code": False,
    }
    (folder / "training_metrics.json").write_text(json.dumps({"config": config}))
    return folder


def test_thresholds_parse_from_a_flag_string():
    assert parse_thresholds("accuracy=0.8, macro_f1 = 0.7") == {"accuracy": 0.8, "macro_f1": 0.7}
    assert parse_thresholds({"accuracy": 0.9}) == {"accuracy": 0.9}
    with pytest.raises(ValueError, match="'accuracy' is not METRIC=VALUE"):
        parse_thresholds("accuracy")
    with pytest.raises(ValueError, match="'high' is not a number"):
        parse_thresholds("accuracy=high")


def test_gate_defaults_are_the_documented_ones():
    gates = GateThresholds()
    assert (gates.max_loss_gap, gates.min_loss_gap_difference) == (2.0, 0.1)
    assert gates.rising_eval_loss_window == 3
    assert gates.min_improvement == 0.01 and gates.max_export_degradation == 0.02
    assert gates.metric_floors("classification") == {"accuracy": 0.8}
    assert gates.metric_floors("generation") == {}
    assert GateThresholds(min_metric="rougeL=0.3").metric_floors("generation") == {"rougeL": 0.3}
    with pytest.raises(ValidationError, match="max_loss_gap"):
        GateThresholds(max_loss_gap=1.0)


def test_run_settings_fill_the_model_and_data(run_dir, tmp_path):
    config = config_for_run(run_dir)
    assert config.model_name_or_path == "tiny"
    assert config.data_files == ["rows.jsonl"] and config.label_field == "tone"
    assert config.max_seq_len == 96 and config.seed == 7
    assert config.output_dir == run_dir / "evaluation"
    assert config.resolved_task() == "classification"
    assert config_for_run(run_dir, output_path=tmp_path / "x").output_dir == tmp_path / "x"


def test_other_data_or_format_replaces_the_runs(run_dir):
    given = {"data_name": "org/dataset", "use_chat_template": True}
    defaults = defaults_from_run(run_dir, given)
    assert "data_files" not in defaults and "text_template" not in defaults
    assert defaults["label_field"] == "tone" and "lora_r" not in defaults
    config = config_for_run(run_dir, **given)
    assert config.data_name == "org/dataset" and config.data_files is None
    assert config.use_chat_template and config.text_template is None


def test_missing_sources_and_impossible_tasks_are_refused(run_dir, tmp_path):
    with pytest.raises(ValidationError, match="run_path .* or model_name_or_path"):
        EvaluateConfig(data_files=["a.jsonl"], text_field="text", output_path=tmp_path)
    with pytest.raises(ValidationError, match="give output_path"):
        EvaluateConfig(model_name_or_path="m", data_files=["a.jsonl"], text_field="text")
    text_only = EvaluateConfig(
        model_name_or_path="m", data_files=["a"], text_field="text", output_path=tmp_path
    )
    assert text_only.resolved_task() == "language_modeling"
    with pytest.raises(ConfigError, match="--text_field rows are whole texts"):
        text_only.model_copy(update={"task": "generation"}).resolved_task()
    unlabelled = config_for_run(run_dir, label_field=None, task="classification")
    with pytest.raises(ConfigError, match="classification needs --label_field"):
        unlabelled.resolved_task()
    assert config_for_run(run_dir, label_field=None).resolved_task() == "generation"
