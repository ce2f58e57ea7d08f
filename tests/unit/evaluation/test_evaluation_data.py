"""Evaluation reads the data again: with the run's own data settings it scores only the
data the run was trained on, and fails (not just records) when a file changed since."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmops.errors import DataError
from slmops.evaluation.config import config_for_run
from slmops.evaluation.run import run as evaluate
from slmops.layout import METRICS_NAME
from slmops.training.run import run as train


@pytest.fixture
def trained(finetune_config):
    """A short LoRA run on tmp_path/tones.jsonl; returns its config."""
    config = finetune_config(max_steps=2, eval_steps=2, merge_adapter=False)
    train(config)
    return config


def settings(**overrides):
    return {"compare_base": False, "fail_on_gates": False, "max_new_tokens": 4, **overrides}


def test_the_training_data_are_evaluated(trained):
    result = evaluate(config_for_run(trained.training_dir, **settings()))
    assert result.summary["data"]["same_as_training"] is True


def test_data_changed_after_training_fail_the_evaluation(trained):
    recorded = json.loads(trained.folder.metrics.read_text())["dataset"]["fingerprint"]
    data = trained.data_files[0]
    rows = Path(data).read_text(encoding="utf-8").splitlines()
    Path(data).write_text("\n".join(rows[:-1]) + "\n", encoding="utf-8")  # one row fewer

    config = config_for_run(trained.training_dir, **settings())
    with pytest.raises(DataError) as refused:
        evaluate(config)
    message = str(refused.value)
    assert f"records training on fingerprint {recorded}" in message
    assert str(trained.training_dir / METRICS_NAME) in message and data in message
    now = message.split("now give fingerprint ", 1)[1].split(",", 1)[0]
    assert len(now) == 64 and now != recorded
    assert not config.output_dir.exists()  # nothing evaluated, nothing written


def test_other_data_chosen_on_purpose_are_scored_and_recorded_as_other(trained, write_jsonl):
    from slmops.testing import tone_rows

    other = write_jsonl(tone_rows(40, seed=3), "other.jsonl")
    result = evaluate(config_for_run(trained.training_dir, **settings(data_files=[str(other)])))
    assert result.summary["data"]["same_as_training"] is False
    assert result.summary["data"]["fingerprint"] != result.summary["data"]["training_fingerprint"]
