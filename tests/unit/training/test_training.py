"""Short real training runs on the tiny model: every method, outputs, resume, errors."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from slmops.data.loading import prepare
from slmops.errors import ConfigError, DataError, ModelError, TrainingError
from slmops.models import load_causal_lm, load_tokenizer
from slmops.training.run import run


def adapter_weights(training_dir):
    return load_file(training_dir / "adapter" / "adapter_model.safetensors")


def test_lora_run_writes_adapter_merged_model_and_metrics(finetune_config):
    logged = []
    config = finetune_config()
    result = run(config, log=logged.append)

    assert result.adapter_path == config.output_path / "adapter"
    assert result.merged_path == config.output_path / "merged"
    assert set(adapter_weights(config.output_path)) and all(
        "lora_" in name for name in adapter_weights(config.output_path)
    )
    merged = load_causal_lm(str(result.merged_path))
    assert merged.dtype == torch.float32

    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["global_step"] == 6
    assert [entry["step"] for entry in metrics["train_loss_history"]] == [1, 2, 3, 4, 5, 6]
    assert [entry["step"] for entry in metrics["eval_loss_history"]] == [3, 6]
    assert metrics["best_eval_loss"] == min(e["eval_loss"] for e in metrics["eval_loss_history"])
    assert metrics["target_modules"] == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj",
    ]  # fmt: skip
    assert metrics["tokens_per_second"] > 0 and metrics["train_tokens"] > 0
    assert metrics["peak_memory_mb"]["rss"] > 0
    assert metrics["config"]["lora_r"] == 16
    kernels = metrics["cpu_kernels"]  # every projection of the 2 layers, one GEMM library
    assert kernels["fused_lora_projections"] == 14
    assert kernels["frozen_weight_gemm"] in ("mkl", "onednn")
    tokenizer = load_tokenizer(str(config.model_name_or_path))
    assert metrics["dataset"]["fingerprint"] == prepare(config, tokenizer).fingerprint
    assert metrics["dataset"]["train_examples"] == 108

    progress = [line for line in logged if line.startswith("step ")]
    assert progress[0].startswith("step 1/6  loss ")
    assert all(part in progress[-1] for part in ("eval_loss", "lr ", "tok/s", "ETA"))


def test_training_lowers_the_eval_loss(finetune_config):
    result = run(finetune_config(method="full", max_steps=30, eval_steps=10, learning_rate=3e-3))
    history = [entry["eval_loss"] for entry in result.metrics["eval_loss_history"]]
    assert history[-1] < history[0] - 0.5


def test_qlora_trains_on_a_4bit_base_and_merges_into_float32(finetune_config, tmp_path):
    lora = run(finetune_config(output_path=tmp_path / "lora", max_steps=2, eval_steps=2))
    qlora = run(
        finetune_config(output_path=tmp_path / "qlora", method="qlora", max_steps=2, eval_steps=2)
    )
    assert qlora.metrics["model_memory_mb"] < 0.7 * lora.metrics["model_memory_mb"]
    assert qlora.metrics["placement"]["compute_dtype"] == "float32"
    # a 4-bit base is not a plain float32 Linear: peft's forward
    assert qlora.metrics["cpu_kernels"].get("fused_lora_projections", 0) == 0
    assert load_causal_lm(str(qlora.merged_path)).dtype == torch.float32
    config = json.loads((qlora.adapter_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16


def test_dora_adapter_has_magnitude_vectors(finetune_config):
    result = run(finetune_config(method="dora", max_steps=2, eval_steps=2))
    config = json.loads((result.adapter_path / "adapter_config.json").read_text())
    assert config["use_dora"] is True
    assert any("lora_magnitude_vector" in name for name in adapter_weights(result.training_dir))


def test_full_fine_tuning_changes_every_layer_and_writes_no_adapter(finetune_config):
    config = finetune_config(method="full", max_steps=2, eval_steps=2)
    result = run(config)
    assert result.adapter_path is None and not (result.training_dir / "adapter").exists()
    base = load_causal_lm(config.model_name_or_path).state_dict()
    tuned = load_causal_lm(str(result.merged_path)).state_dict()
    assert not torch.equal(
        base["model.layers.0.mlp.up_proj.weight"], tuned["model.layers.0.mlp.up_proj.weight"]
    )


def test_task_names_give_each_adapter_its_own_folder(finetune_config, tmp_path):
    out = tmp_path / "adapters"
    for task in ("classification", "generation"):
        run(finetune_config(output_path=out, task_name=task, max_steps=1, eval_steps=1))
    assert (out / "classification" / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "generation" / "adapter" / "adapter_model.safetensors").is_file()


def test_packing_and_tensorboard(finetune_config):
    result = run(finetune_config(packing=True, max_seq_len=128, report_to="tensorboard"))
    assert result.metrics["global_step"] == 6
    assert list((result.training_dir / "tensorboard").glob("events.out.tfevents.*"))


class StopAtSave(Exception):
    pass


def stop_after_checkpoint(step):
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise StopAtSave(step)

    return Stop()


def test_a_stopped_run_resumes_from_its_checkpoint_and_ends_where_an_unbroken_one_does(
    finetune_config, tmp_path
):
    settings = {"max_steps": 6, "eval_steps": 2}
    unbroken = run(finetune_config(output_path=tmp_path / "unbroken", **settings))

    config = finetune_config(output_path=tmp_path / "broken", **settings)
    with pytest.raises(StopAtSave):
        run(config, callbacks=[stop_after_checkpoint(4)])
    assert not (config.output_path / "adapter").exists()
    assert not (config.output_path / "training_metrics.json").exists()

    logged = []
    resumed = run(config, log=logged.append)
    assert "resuming from checkpoint-4" in logged
    assert resumed.metrics["resumed_from"] == "checkpoint-4"
    assert [e["step"] for e in resumed.metrics["train_loss_history"]] == [1, 2, 3, 4, 5, 6]
    expected, actual = adapter_weights(unbroken.training_dir), adapter_weights(resumed.training_dir)
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, atol=1e-6, rtol=1e-5)


def test_a_checkpoint_cut_short_is_skipped_when_resuming(finetune_config):
    config = finetune_config(max_steps=4, eval_steps=2)
    with pytest.raises(StopAtSave):
        run(config, callbacks=[stop_after_checkpoint(4)])
    (config.output_path / "checkpoints" / "checkpoint-4" / "trainer_state.json").unlink()
    logged = []
    run(config, log=logged.append)
    assert "resuming from checkpoint-2" in logged


def test_a_finished_run_is_returned_as_it_is(finetune_config):
    config = finetune_config(max_steps=2, eval_steps=2)
    first = run(config)
    logged = []
    again = run(config, log=logged.append)
    assert again.reused and again.metrics == first.metrics
    assert any("already holds this finished run" in line for line in logged)


def test_other_settings_on_the_same_output_path_are_refused_unless_overwrite(finetune_config):
    run(finetune_config(max_steps=2, eval_steps=2))
    with pytest.raises(ConfigError, match=r"other settings \(lora_r: 16 -> 8\).*--overwrite"):
        run(finetune_config(max_steps=2, eval_steps=2, lora_r=8))
    result = run(finetune_config(max_steps=2, eval_steps=2, lora_r=8, overwrite=True))
    assert result.metrics["config"]["lora_r"] == 8 and not result.reused


def test_a_folder_with_foreign_run_files_is_not_touched(finetune_config):
    config = finetune_config()
    (config.output_path / "adapter").mkdir(parents=True)
    with pytest.raises(ConfigError, match="from an unknown run"):
        run(config)
    assert (config.output_path / "adapter").is_dir()


def test_early_stopping_ends_the_run_and_keeps_the_best_checkpoint(finetune_config):
    # Only an eval-loss drop of 10 counts as better: the second evaluation ends the run.
    config = finetune_config(
        max_steps=20, eval_steps=2, early_stopping_patience=1, early_stopping_threshold=10.0
    )
    result = run(config)
    assert result.metrics["stopped_early"] is True
    assert result.metrics["global_step"] == 4
    losses = [entry["eval_loss"] for entry in result.metrics["eval_loss_history"]]
    assert result.metrics["best_eval_loss"] == min(losses)


HOOK_MODULE = textwrap.dedent(
    '''
    import torch

    from slmops.training.trainer import shifted_cross_entropy

    TRAINING_LOSSES = []


    class MarginContrastiveLoss(torch.nn.Module):
        """Cross-entropy plus a contrastive margin between the gold token's logit and the
        strongest wrong one (the reference guide's contrastive loss, on next-token logits)."""

        def __init__(self, margin=1.0):
            super().__init__()
            self.margin = margin

        def forward(self, outputs, labels, num_items_in_batch=None):
            logits, targets = outputs.logits[:, :-1].float(), labels[:, 1:]
            mask = targets != -100
            index = targets.clamp(min=0).unsqueeze(-1)
            gold = logits.gather(-1, index).squeeze(-1)
            rival = logits.scatter(-1, index, float("-inf")).amax(-1)
            hinge = torch.clamp(self.margin - (gold - rival), min=0)[mask].mean()
            loss = shifted_cross_entropy(outputs.logits, labels, num_items_in_batch) + hinge
            if torch.is_grad_enabled():
                TRAINING_LOSSES.append(loss.item())
            return loss


    def nan_after_three_steps(outputs, labels, num_items_in_batch=None):
        loss = shifted_cross_entropy(outputs.logits, labels, num_items_in_batch)
        if torch.is_grad_enabled():
            TRAINING_LOSSES.append(loss.item())
            if len(TRAINING_LOSSES) > 3:
                return loss * float("nan")
        return loss
    '''
)


@pytest.fixture
def loss_hooks(tmp_path, monkeypatch):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "my_losses.py").write_text(HOOK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "hooks"))
    import importlib

    import my_losses

    importlib.reload(my_losses)
    return my_losses


def test_a_custom_loss_class_is_what_training_minimises(finetune_config, loss_hooks):
    result = run(finetune_config(loss="my_losses:MarginContrastiveLoss"))
    assert len(loss_hooks.TRAINING_LOSSES) == 6
    logged = [entry["loss"] for entry in result.metrics["train_loss_history"]]
    assert logged == pytest.approx(loss_hooks.TRAINING_LOSSES, rel=1e-4)
    # A custom loss gets every logit: the head is not folded into slmops's own loss.
    assert "fused_head_loss" not in result.metrics["cpu_kernels"]


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(finetune_config, loss_hooks):
    config = finetune_config(loss="my_losses:nan_after_three_steps", max_steps=8, eval_steps=2)
    with pytest.raises(TrainingError) as error:
        run(config)
    message = str(error.value)
    assert "the training loss became nan at step 4" in message
    assert "last good checkpoint is " in message and "checkpoint-2" in message
    assert "--learning_rate" in message
    checkpoint = load_file(
        config.output_path / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"
    )
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint.values())
    assert not (config.output_path / "adapter").exists()
    assert not (config.output_path / "training_metrics.json").exists()


def test_a_loss_hook_that_cannot_be_imported_is_named(finetune_config):
    with pytest.raises(
        ConfigError, match="--loss nowhere.losses:fn: cannot import 'nowhere.losses'"
    ):
        run(finetune_config(loss="nowhere.losses:fn"))


def test_an_unknown_model_is_a_clear_error(finetune_config, tmp_path):
    with pytest.raises(ModelError, match="no-such-model"):
        run(finetune_config(model_name_or_path=str(tmp_path / "no-such-model")))


def test_a_missing_target_module_lists_the_existing_ones(finetune_config):
    with pytest.raises(
        ConfigError, match="c_attn is not a linear layer.*its linear layers are: down_proj"
    ):
        run(finetune_config(target_modules=["c_attn"]))
    # Nothing was trained, so the corrected command may use the same output path.
    fixed = run(finetune_config(target_modules=["q_proj", "v_proj"], max_steps=1, eval_steps=1))
    assert fixed.metrics["target_modules"] == ["q_proj", "v_proj"]


def test_an_empty_training_file_is_refused_before_any_model_loads(finetune_config, write_jsonl):
    empty = write_jsonl([], "empty.jsonl")
    with pytest.raises(DataError, match="empty.jsonl"):
        run(finetune_config(data_files=[str(empty)]))


def test_an_empty_training_split_is_refused(finetune_config):
    with pytest.raises(DataError, match=r"train_split 'train\[:0\]' selects no rows"):
        run(finetune_config(train_split="train[:0]"))


def test_examples_that_lose_every_answer_token_are_refused(finetune_config):
    with pytest.raises(TrainingError, match="raise --max_seq_len"):
        run(finetune_config(max_seq_len=8))


def test_nothing_nan_in_the_logged_history(finetune_config):
    result = run(finetune_config(max_steps=2, eval_steps=2))
    assert all(math.isfinite(e["loss"]) for e in result.metrics["train_loss_history"])


def test_qlora_without_bitsandbytes_fails_before_anything_is_written(finetune_config, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    config = finetune_config(method="qlora")
    with pytest.raises(ConfigError, match="--method qlora needs bitsandbytes"):
        run(config)
    assert not config.output_path.exists()


def test_a_second_process_on_the_same_folder_is_refused_and_retried(finetune_config):
    from filelock import FileLock

    from slmops.errors import SlmopsError, TrainingFolderBusy
    from slmops.layout import LOCK_NAME

    config = finetune_config(max_steps=1, eval_steps=1)
    config.output_path.mkdir(parents=True)
    with (
        FileLock(str(config.output_path / LOCK_NAME)),
        pytest.raises(TrainingFolderBusy, match="is being trained by .* will be retried") as busy,
    ):
        run(config)
    assert not isinstance(busy.value, SlmopsError)  # retried, not failed for good
    assert run(config).metrics["global_step"] == 1


def test_gradient_accumulation_feeds_more_rows_per_step(finetune_config, tmp_path):
    single = run(finetune_config(output_path=tmp_path / "a", max_steps=2, eval_steps=2))
    double = run(
        finetune_config(
            output_path=tmp_path / "b", max_steps=2, eval_steps=2, gradient_accumulation_steps=2
        )
    )
    assert double.metrics["train_tokens"] > 1.5 * single.metrics["train_tokens"]


def test_epochs_set_the_length_when_max_steps_is_not_given(finetune_config):
    # 108 training rows, batch 4: one epoch is 27 steps; lm_head trains in full beside it.
    result = run(
        finetune_config(max_steps=None, num_train_epochs=1, eval_steps=9, modules_to_save="lm_head")
    )
    assert result.metrics["global_step"] == 27
    assert [e["step"] for e in result.metrics["eval_loss_history"]] == [9, 18, 27]
    assert "base_model.model.lm_head.weight" in adapter_weights(result.training_dir)
    merged = load_causal_lm(str(result.merged_path))
    base = load_causal_lm(str(result.metrics["model_path"]))
    head, embeddings = merged.lm_head.weight, merged.model.embed_tokens.weight
    assert torch.equal(head, embeddings)  # still tied after merging
    assert not torch.equal(head, base.lm_head.weight)


class StopAtEnd(Exception):
    pass


def stop_after_training():
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            raise StopAtEnd

    return Stop()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_run_stopped_after_its_last_step_is_completed_without_more_training(
    finetune_config, tmp_path, method
):
    settings = {"method": method, "max_steps": 4, "eval_steps": 2}
    unbroken = run(finetune_config(output_path=tmp_path / "unbroken", **settings))
    config = finetune_config(output_path=tmp_path / "broken", **settings)
    with pytest.raises(StopAtEnd):
        run(config, callbacks=[stop_after_training()])
    logged = []
    completed = run(config, log=logged.append)
    assert any("training had reached its last step" in line for line in logged)
    assert completed.metrics["global_step"] == 4  # not one step more
    assert completed.metrics["best_checkpoint"] == unbroken.metrics["best_checkpoint"]
    folder = "adapter" if method == "lora" else "merged"
    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    expected = load_file(unbroken.training_dir / folder / name)
    actual = load_file(completed.training_dir / folder / name)
    assert expected.keys() == actual.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(actual[key], tensor)


def test_a_finished_run_gets_its_merged_model_when_asked_later(finetune_config):
    first = run(finetune_config(max_steps=2, eval_steps=2, merge_adapter=False))
    assert first.merged_path is None and not (first.training_dir / "merged").exists()
    again = run(finetune_config(max_steps=2, eval_steps=2))
    assert again.reused and again.merged_path == again.training_dir / "merged"
    assert json.loads(again.metrics_path.read_text())["outputs"]["merged"] == "merged"
