"""transformers' Trainer with what slmops adds: a count of real tokens per step, a stop at
the first NaN/inf loss (before it reaches the weights), pluggable loss functions, and the
one place a run's TrainingArguments and callbacks are built from its FinetuneConfig."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from slmops.data.batching import IGNORE_INDEX, TOKEN_COUNT, PackedCollator, PaddingCollator
from slmops.devices import Placement, local_rank
from slmops.errors import ConfigError, NonFiniteLossError
from slmops.progress import Log
from slmops.training.config import FinetuneConfig

if TYPE_CHECKING:
    from slmops.training.head_loss import FusedHead


def load_loss_hook(spec: str) -> Callable:
    """``module.path:callable`` -> the callable; a class is instantiated with no arguments
    (an ``nn.Module`` loss such as the reference guide's contrastive loss)."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"--loss {spec}: cannot import {module_name!r} ({exc}); the module must be on "
            "PYTHONPATH (or installed) where training runs"
        ) from None
    hook = getattr(module, attribute, None)
    if hook is None:
        raise ConfigError(f"--loss {spec}: module {module_name!r} has no {attribute!r}")
    if inspect.isclass(hook):
        hook = hook()
    if not callable(hook):
        raise ConfigError(f"--loss {spec}: {attribute!r} is not callable")
    return hook


def shifted_cross_entropy(logits, labels, num_items_in_batch=None):
    """Next-token cross-entropy over labelled positions: the default causal-LM loss, for
    custom losses to build on (labels arrive aligned with the inputs, not shifted)."""
    import torch

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:].to(logits.device)
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = (
        num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    )
    return total / count


def labeled_positions(labels):
    """Where the LM head is needed: a (batch, seq) bool mask of the positions whose next
    token is a training target. The prompt's positions (most of a classification row) and
    the padding need no logits: with a 49k-token vocabulary the head is a fifth of the
    FLOPs per token of a 135M model."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def labeled_targets(labels):
    """The next-token targets at ``labeled_positions(labels)``, in the mask's row-major
    order: the rows of the logits the labeled path computes."""
    targets = labels[:, 1:]
    return targets[targets != IGNORE_INDEX]


def labeled_cross_entropy(outputs, labels, num_items_in_batch=None):
    """The causal-LM loss from logits computed only at ``labeled_positions(labels)``
    (shape (targets, vocab), in the mask's row-major order): the same sum over targets and
    the same normalisation as transformers' own loss, without the other positions."""
    import torch

    targets = labeled_targets(labels).to(outputs.logits.device)
    total = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="sum")
    return per_item(total, targets, num_items_in_batch)


def per_item(total, targets, num_items_in_batch=None):
    """A summed loss divided as transformers does: by the targets of the whole
    (accumulated, gathered) batch when the Trainer counted them, else by this call's."""
    return total / (num_items_in_batch if num_items_in_batch is not None else max(len(targets), 1))


def computes_labeled_logits(model) -> bool:
    """Whether the model's forward takes a per-row mask of the logits to compute
    (``logits_to_keep``, transformers' causal LMs)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def build_trainer(
    *,
    loss_hook: Callable | None = None,
    labeled_logits: bool = False,
    fused_head: FusedHead | None = None,
    **kwargs,
):
    """A ``SlmopsTrainer``; built here so transformers is imported only when training.
    ``labeled_logits`` (without a ``loss_hook``, which gets every logit): the LM head runs
    only where the loss needs it; ``fused_head`` too: in training steps it runs inside the
    loss, a slice of tokens at a time (slmops.training.head_loss)."""
    from transformers import Trainer

    class SlmopsTrainer(Trainer):
        def __init__(self, **trainer_kwargs):
            self.labeled_logits = labeled_logits and not loss_hook
            self.fused_head = fused_head if self.labeled_logits else None
            loss = self._labeled_loss if self.labeled_logits else loss_hook
            super().__init__(compute_loss_func=loss, **trainer_kwargs)
            self.train_tokens = 0

        def _labeled_loss(self, outputs, labels, num_items_in_batch=None):
            if self.fused_head is None or not self.fused_head.passing:
                return labeled_cross_entropy(outputs, labels, num_items_in_batch)
            targets = labeled_targets(labels).to(outputs.logits.device)
            total = self.fused_head.loss(outputs.logits, targets)
            return per_item(total, targets, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            tokens = inputs.pop(TOKEN_COUNT, 0)
            if self.labeled_logits and "labels" in inputs:
                inputs = {**inputs, "logits_to_keep": labeled_positions(inputs["labels"])}
            # Evaluation asks for the outputs, whose logits must be logits.
            fused = self.fused_head is not None and not return_outputs and "labels" in inputs
            with self.fused_head.passing_hidden_states() if fused else nullcontext():
                result = super().compute_loss(
                    model,
                    inputs,
                    return_outputs=return_outputs,
                    num_items_in_batch=num_items_in_batch,
                )
            if model.training:
                self.train_tokens += int(tokens)
                loss = result[0] if return_outputs else result
                value = float(loss.detach().float().mean())
                if not math.isfinite(value):
                    # Raised before backward(): the weights and checkpoints stay finite.
                    raise NonFiniteLossError(value, self.state.global_step + 1)
            return result

    return SlmopsTrainer(**kwargs)


def make_trainer(
    config: FinetuneConfig,
    placement: Placement,
    *,
    model,
    tokenizer,
    train_rows: list,
    eval_rows: list,
    loss_hook: Callable | None,
    log: Log,
    fused_head: FusedHead | None = None,
):
    """The Trainer of one run: its TrainingArguments (built here and nowhere else), the
    collator, and slmops's callbacks (progress lines, early stopping, TensorBoard)."""
    from transformers import EarlyStoppingCallback, PrinterCallback, TrainingArguments

    from slmops.training.progress import final_step_callback, progress_callback

    args = TrainingArguments(
        output_dir=str(config.folder.checkpoints),
        max_steps=config.max_steps or -1,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size
        or config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        activation_checkpointing=config.gradient_checkpointing,  # Olive's flag, v5's name
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=placement.mixed_precision == "bf16",
        fp16=placement.mixed_precision == "fp16",
        use_cpu=not placement.on_gpu,
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,  # a NaN must surface, not be averaged away
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.checkpoint_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        restore_callback_states_from_checkpoint=config.early_stopping_patience is not None,
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_pin_memory=placement.on_gpu,
        **_group_arguments(config, placement),
    )
    pad_id = tokenizer.pad_token_id
    if config.packing:
        collator = PackedCollator(pad_id)
    else:
        collator = PaddingCollator(
            pad_id,
            pad_to=config.max_seq_len if config.padding == "max_length" else None,
            multiple_of=8 if placement.on_gpu else None,
        )
    trainer = build_trainer(
        loss_hook=loss_hook,
        labeled_logits=config.logits == "labeled" and computes_labeled_logits(model),
        fused_head=fused_head,
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)  # raw log dicts; our progress lines replace them
    trainer.add_callback(progress_callback(log, lambda: trainer.train_tokens))
    trainer.add_callback(final_step_callback())
    if config.early_stopping_patience is not None:
        trainer.add_callback(
            EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_threshold)
        )
    # A writer opens its event file at once: in a group, rank 0's is the only one.
    if config.report_to == "tensorboard" and trainer.is_world_process_zero():
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        writer = SummaryWriter(log_dir=str(config.folder.tensorboard))
        trainer.add_callback(TensorBoardCallback(tb_writer=writer))
    return trainer


def _group_arguments(config: FinetuneConfig, placement: Placement) -> dict:
    """TrainingArguments of a process in a torchrun group (torchrun sets LOCAL_RANK, the
    ranks and the world size). The launcher itself trains nothing in a group: it only
    completes a run whose last checkpoint is final, with plain arguments."""
    if config.num_processes == 1 or local_rank() is None:
        return {}
    arguments: dict = {"ddp_backend": "nccl" if placement.on_gpu else "gloo"}
    if config.fsdp:
        # FSDP2 wraps each decoder layer (the model's _no_split_modules); FULL_STATE_DICT
        # so rank 0 can write ordinary safetensors.
        arguments["fsdp"] = True
        arguments["fsdp_config"] = {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "state_dict_type": "FULL_STATE_DICT",
        }
    return arguments


def group_total(trainer, count: int) -> int:
    """``count`` summed over the processes of the run (itself in one process)."""
    if trainer.args.world_size == 1:
        return count
    import torch

    return int(trainer.accelerator.reduce(torch.tensor(count, device=trainer.args.device), "sum"))


def full_state_dict(trainer) -> dict | None:
    """The unsharded weights of an FSDP model, on rank 0 (every rank must call it)."""
    return trainer.accelerator.get_state_dict(trainer.model_wrapped)
