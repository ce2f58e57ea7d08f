"""Fault injection: a real fine-tune of the tiny model, SIGKILLed once its first checkpoint
is on disk, then retried as Airflow (or a user) would: the same command again. The retry
is not blocked by the killed attempt's lock, resumes from the last complete checkpoint and
finishes with a valid adapter."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmops.layout import TrainingLayout
from slmops.training.lock import holder_record

MAX_STEPS = 60
CHECKPOINT_STEPS = 4


def finetune_command(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "slmops.cli", "finetune", "--config", str(config_file)]


def first_checkpoint(folder: TrainingLayout, process: subprocess.Popen, limit_s: float) -> Path:
    """The first complete checkpoint (transformers writes trainer_state.json last)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done = sorted(folder.checkpoints.glob("checkpoint-*/trainer_state.json"))
        if done:
            return done[0].parent
        if process.poll() is not None:
            pytest.fail(f"the fine-tune ended ({process.returncode}) before a checkpoint")
        time.sleep(0.02)
    pytest.fail(f"no checkpoint within {limit_s} s")


@pytest.fixture
def config_file(tmp_path, tiny_model_dir, write_jsonl):
    from slmops.testing import TONE_TEMPLATE, tone_rows

    data = write_jsonl(tone_rows(120), "tones.jsonl")
    settings = {
        "model_name_or_path": str(tiny_model_dir),
        "data_files": [str(data)],
        "text_template": TONE_TEMPLATE,
        "label_field": "tone",
        "output_path": str(tmp_path / "run"),
        "max_steps": MAX_STEPS,
        "eval_steps": CHECKPOINT_STEPS,
        "save_total_limit": 50,  # keep every checkpoint: the test reads which were written
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "merge_adapter": False,
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(json.dumps(settings), encoding="utf-8")  # JSON is YAML
    return path


def test_sigkill_during_finetune_then_retry_resumes_and_finishes(config_file, tmp_path):
    folder = TrainingLayout(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    attempt = subprocess.Popen(
        finetune_command(config_file),
        env=env,
        start_new_session=True,  # its own process group: the kill takes everything it started
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        first_checkpoint(folder, attempt, limit_s=45)
        os.killpg(attempt.pid, signal.SIGKILL)
    finally:
        if attempt.poll() is None:
            os.killpg(attempt.pid, signal.SIGKILL)
        attempt.wait()
    assert attempt.returncode == -signal.SIGKILL
    assert not folder.metrics.exists(), "the run finished before the kill; nothing was tested"
    # The killed attempt held the lock (its record is left behind) and left checkpoints.
    assert json.loads(holder_record(folder.root).read_text())["pid"] == attempt.pid
    left = sorted(int(path.name.split("-")[1]) for path in folder.checkpoints.iterdir())
    assert left and max(left) < MAX_STEPS

    retry = subprocess.run(
        finetune_command(config_file), env=env, capture_output=True, text=True, timeout=120
    )
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert "is being trained by" not in retry.stderr  # the dead attempt's lock did not block

    metrics = json.loads(folder.metrics.read_text())
    assert metrics["global_step"] == MAX_STEPS
    resumed = metrics["resumed_from"]
    assert resumed is not None, "the retry started over instead of resuming"
    resumed_step = int(resumed.split("-")[1])
    assert resumed_step in left and resumed_step % CHECKPOINT_STEPS == 0
    assert f"resuming from {resumed}" in retry.stderr
    history = [entry["step"] for entry in metrics["train_loss_history"]]
    assert history == sorted(set(history)) and history[-1] == MAX_STEPS  # no step twice
    assert not holder_record(folder.root).exists()  # the retry released the lock cleanly
    assert_valid_adapter(folder, metrics)


def assert_valid_adapter(folder: TrainingLayout, metrics: dict) -> None:
    """The adapter loads onto its base and the model answers with finite logits."""
    import torch
    from safetensors.torch import load_file

    from slmops.models import load_causal_lm, load_tokenizer
    from slmops.training.adapters import apply_adapter

    weights = load_file(folder.adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    base_path = metrics["model_path"]
    model = apply_adapter(load_causal_lm(base_path), folder.adapter, base_path)
    tokenizer = load_tokenizer(base_path)
    batch = tokenizer(["The train was late again"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == model.config.vocab_size
    assert math.isfinite(float(logits.abs().max()))
