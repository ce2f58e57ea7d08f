"""Data-parallel training with torchrun on CPU (gloo), for real, on the tiny model.

The tolerance of "the same loss history": 1e-4 relative. Measured here the two histories
differ from the 7th significant digit on (the gradients are summed in another order).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading

import pytest
from processes import first_checkpoint, no_processes_left, processes_mentioning, wait_until

from slmops.errors import (
    TrainingError,
    TrainingFolderBusy,
    TrainingGroupFailed,
)
from slmops.evaluation.config import config_for_run
from slmops.evaluation.run import run as evaluate
from slmops.training.run import run

pytestmark = pytest.mark.integration
SAME = 1e-4  # relative tolerance between one process x 8 and two processes x 4


def losses(result, key="train_loss_history", value="loss"):
    return [entry[value] for entry in result.metrics[key]]


@pytest.fixture
def pair(finetune_config, tmp_path):
    """The same work as 1 process x batch 8 and as 2 processes x batch 4."""

    def make(**settings):
        common = {"max_steps": 8, "eval_steps": 4, "lora_dropout": 0.0, **settings}
        one = finetune_config(output_path=tmp_path / "one", per_device_train_batch_size=8, **common)
        two = finetune_config(
            output_path=tmp_path / "two", per_device_train_batch_size=4, num_processes=2, **common
        )
        return one, two

    return make


@pytest.mark.parametrize("method", ["lora", "full"])
def test_two_processes_learn_what_one_process_with_their_global_batch_learns(pair, method):
    one_config, two_config = pair(method=method)
    logged: list[str] = []
    one = run(one_config)
    two = run(two_config, log=logged.append)

    assert losses(two) == pytest.approx(losses(one), rel=SAME)
    # The same schedule: one optimizer step per global batch of 8.
    assert losses(two, value="learning_rate") == losses(one, value="learning_rate")
    assert losses(two, "eval_loss_history", "eval_loss") == pytest.approx(
        losses(one, "eval_loss_history", "eval_loss"), rel=SAME
    )
    assert two.metrics["global_step"] == one.metrics["global_step"] == 8
    assert two.metrics["num_processes"] == 2 and one.metrics["num_processes"] == 1
    assert two.metrics["global_batch_size"] == one.metrics["global_batch_size"] == 8
    # Both ranks' tokens are counted: the same rows were trained on.
    assert two.metrics["train_tokens"] == one.metrics["train_tokens"]
    assert any("global batch 8" in line for line in logged)
    for rank in (0, 1):
        assert any(line.startswith(f"[rank {rank}] step 8/8  loss ") for line in logged)
    assert not two_config.folder.group_settings.exists()  # the launcher cleans up
    if method == "full":
        assert two.adapter_path is None and (two.merged_path / "model.safetensors").is_file()


def test_early_stopping_and_the_best_checkpoint_agree_across_processes(pair):
    # A threshold no evaluation can beat: both stop after the second evaluation (patience
    # 1), decided on the eval loss gathered from every process, and restore the same best.
    one_config, two_config = pair(
        eval_steps=2, early_stopping_patience=1, early_stopping_threshold=10.0
    )
    one, two = run(one_config), run(two_config)
    for result in (one, two):
        assert result.metrics["global_step"] == 4 and result.metrics["stopped_early"]
    assert two.metrics["best_checkpoint"] == one.metrics["best_checkpoint"]
    assert two.metrics["best_eval_loss"] == pytest.approx(one.metrics["best_eval_loss"], rel=SAME)
    assert losses(two) == pytest.approx(losses(one), rel=SAME)


def test_the_adapter_and_merged_model_of_two_processes_evaluate_as_usual(pair, tmp_path):
    one_config, two_config = pair(method="lora")
    one, two = run(one_config), run(two_config)
    assert (two.adapter_path / "adapter_model.safetensors").is_file()
    assert (two.merged_path / "model.safetensors").is_file()

    scores = []
    for result, name in ((one, "e1"), (two, "e2")):
        settings = dict(output_path=tmp_path / name, fail_on_gates=False)
        summary = evaluate(config_for_run(result.training_dir, **settings)).summary
        scores.append(summary["models"]["fine_tuned"]["metrics"])
    assert scores[1]["eval_loss"] == pytest.approx(scores[0]["eval_loss"], rel=SAME)
    assert scores[1]["accuracy"] == scores[0]["accuracy"]


def test_a_rank_killed_after_a_checkpoint_fails_retryably_and_a_rerun_resumes(
    finetune_config, tmp_path
):
    config = finetune_config(
        num_processes=2, max_steps=60, eval_steps=5, save_total_limit=20, lora_dropout=0.0
    )
    marker = str(config.folder.group_settings)
    outcome: dict = {}

    def train():
        try:
            outcome["result"] = run(config)
        except BaseException as exc:
            outcome["error"] = exc

    first = threading.Thread(target=train)
    first.start()
    wait_until(
        lambda: first_checkpoint(config.folder.checkpoints), timeout=120, what="a checkpoint"
    )
    # The lock covers the whole group: a second run into the folder is refused meanwhile.
    with pytest.raises(TrainingFolderBusy, match="is being trained by"):
        run(config)
    group = processes_mentioning(marker)
    ranks = [p for p in group if "torch.distributed.run" not in p.cmdline()]
    assert len(ranks) == 2, [p.cmdline() for p in ranks]
    victim = next(p for p in ranks if p.environ().get("RANK") == "1")
    victim.send_signal(signal.SIGKILL)
    first.join(timeout=120)

    assert isinstance(outcome.get("error"), TrainingGroupFailed), outcome
    assert "a rerun resumes" in str(outcome["error"])
    no_processes_left(marker)
    assert not (config.folder.metrics).exists()

    logged: list[str] = []
    result = run(config, log=logged.append)
    resumed = result.metrics["resumed_from"]
    assert resumed and 0 < int(resumed.rsplit("-", 1)[1]) < 60
    assert any(line == f"every process resumes from {resumed}" for line in logged)
    for rank in (0, 1):
        assert any(line.startswith(f"[rank {rank}] resumed at step ") for line in logged)
    assert result.metrics["global_step"] == 60
    steps = [entry["step"] for entry in result.metrics["train_loss_history"]]
    assert steps == list(range(1, 61))  # the history from before the kill is kept
    no_processes_left(marker)


def test_a_group_cut_short_after_its_last_checkpoint_is_completed_without_training(
    finetune_config,
):
    config = finetune_config(num_processes=2, report_to="tensorboard")
    first = run(config)
    assert len(list(config.folder.tensorboard.glob("events.out.tfevents.*"))) == 1  # rank 0's
    # As if the group died after the final checkpoint, before the outputs were written.
    for leftover in (config.folder.metrics, config.folder.adapter, config.folder.merged):
        leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)
    logged: list[str] = []
    again = run(config, log=logged.append)
    assert not any(line.startswith("launching") for line in logged)  # done in this process
    assert any("restoring the best checkpoint" in line for line in logged)
    assert again.metrics["train_loss_history"] == first.metrics["train_loss_history"]
    assert again.adapter_path.is_dir() and again.merged_path.is_dir()


NAN_HOOK = """
from slmops.training.trainer import shifted_cross_entropy

STEPS = []


def nan_after_three_steps(outputs, labels, num_items_in_batch=None):
    loss = shifted_cross_entropy(outputs.logits, labels, num_items_in_batch)
    if loss.requires_grad:
        STEPS.append(1)
        if len(STEPS) > 3:
            return loss * float("nan")
    return loss
"""


def test_a_refusal_inside_the_group_is_raised_as_itself(finetune_config, tmp_path, monkeypatch):
    # The hook's module is found by the group's processes through the launcher's sys.path.
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "group_losses.py").write_text(NAN_HOOK, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "hooks"))
    config = finetune_config(num_processes=2, loss="group_losses:nan_after_three_steps")
    with pytest.raises(TrainingError, match="the training loss became nan at step 4"):
        run(config)
    no_processes_left(str(config.folder.group_settings))


def test_a_group_past_its_timeout_is_stopped(finetune_config):
    config = finetune_config(num_processes=2, max_steps=100_000, eval_steps=1000)
    with pytest.raises(TrainingGroupFailed, match="did not finish within 12 s"):
        run(config, timeout=12)
    no_processes_left(str(config.folder.group_settings))


def test_killing_the_cli_with_sigkill_leaves_no_training_process(finetune_config, tmp_path):
    config = finetune_config(num_processes=2, max_steps=100_000, eval_steps=1000)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")
    cli = subprocess.Popen(
        [sys.executable, "-m", "slmops", "finetune", "--config", str(yaml_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marker = str(config.folder.group_settings)
    try:
        for line in cli.stdout:
            if line.startswith("[rank 1] step "):
                break
        else:
            pytest.fail("the CLI ended before rank 1 trained a step")
        assert len(processes_mentioning(marker)) == 3  # torchrun + two ranks
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=30)
        no_processes_left(marker)
    finally:
        cli.kill()
        cli.wait()
