"""Fine-tuning: ``run(config) -> TrainingResult`` (LoRA, QLoRA, DoRA or full).

Settings, model, data (against the validated fingerprint, when a validation report is
given) and tokenization are checked first; then, holding the training folder
(see ``slmops.training.folder``), the model is trained with transformers' Trainer + peft,
resuming from the folder's last checkpoint if it has one, and ``adapter/``, ``merged/``
and ``training_metrics.json`` are written, in that order.

With ``num_processes`` > 1 the training itself runs in a torchrun group (see
``slmops.training.group``): this process checks, locks and picks the checkpoint, each
group process runs ``train_in_group``, and rank 0 writes the outputs.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmops import __version__
from slmops.artifacts import atomic_directory, atomic_write_json
from slmops.data.batching import encode_examples, pack
from slmops.data.loading import PreparedData, prepare
from slmops.devices import Placement, place
from slmops.errors import ConfigError, NonFiniteLossError, TrainingError
from slmops.gc_scope import collect_only_new
from slmops.layout import ADAPTER, MERGED
from slmops.models import (
    MODEL_LIBRARIES,
    ResolvedModel,
    load_padding_tokenizer,
    quiet_libraries,
    resolve,
)
from slmops.progress import Log, no_log
from slmops.training.adapters import (
    attach_adapter,
    load_base,
    load_checkpoint_weights,
    merge_into_base,
    require_bitsandbytes,
)
from slmops.training.allocator import kept_freed_memory
from slmops.training.config import ADAPTER_METHODS, FinetuneConfig
from slmops.training.folder import (
    TrainingResult,
    best_checkpoint,
    claim,
    finished_result,
    finished_training,
    last_checkpoint,
)
from slmops.training.group import check_group, global_batch_size, launch
from slmops.training.lock import exclusive
from slmops.training.measures import loss_history, parameter_counts, peak_memory_mb
from slmops.training.trainer import full_state_dict, group_total, load_loss_hook, make_trainer
from slmops.training.validated import require_validated

if TYPE_CHECKING:
    from slmops.training.cpu_gemm import Gemm
    from slmops.training.head_loss import FusedHead


def run(
    config: FinetuneConfig,
    *,
    log: Log = no_log,
    callbacks: Sequence = (),
    timeout: float | None = None,
) -> TrainingResult:
    """Train as ``config`` says; ``callbacks`` are extra transformers TrainerCallbacks (one
    process only). ``timeout`` (seconds) bounds a multi-process run's process group."""
    started = time.monotonic()
    if callbacks and config.num_processes > 1:
        raise ConfigError(
            "trainer callbacks run in this process; train with num_processes 1 to use them"
        )
    checked = _check(config, log)
    with exclusive(config.training_dir, log):
        if claim(config, checked.data.fingerprint, log):
            log(f"{config.training_dir} already holds this finished run; nothing to train")
            return _complete_finished(checked, log)
        resume_from = last_checkpoint(config.folder.checkpoints)
        if config.num_processes > 1 and not (resume_from and finished_training(resume_from)):
            if resume_from:
                log(f"every process resumes from {resume_from.name}")
            launch(config, resume_from=resume_from, log=log, timeout=timeout)
            return replace(finished_result(config), reused=False)
        return _train(checked, log, callbacks, started, resume_from)


def train_in_group(config: FinetuneConfig, *, resume_from: Path | None, log: Log) -> None:
    """One process's part of a multi-process run (``launch`` holds the folder's lock and
    chose ``resume_from`` for every process); rank 0 writes the outputs."""
    _train(_check(config, log), log, (), time.monotonic(), resume_from)


def _complete_finished(checked: _Checked, log: Log) -> TrainingResult:
    """The finished run, plus merged/ if it is asked for now and was not made then."""
    config = checked.config
    result = finished_result(config)
    if config.merge_adapter and result.adapter_path and result.merged_path is None:
        result.merged_path = _merge(checked, result.adapter_path, log)
        result.metrics["outputs"]["merged"] = MERGED
        atomic_write_json(result.metrics_path, result.metrics)
    return result


@dataclass
class _Checked:
    """Everything a run needs, verified before its folder is touched."""

    config: FinetuneConfig
    placement: Placement
    loss_hook: Callable | None
    resolved: ResolvedModel
    tokenizer: Any
    data: PreparedData
    train_rows: list
    eval_rows: list
    encoding: dict


def _check(config: FinetuneConfig, log: Log) -> _Checked:
    quiet_libraries()
    if config.method == "qlora":
        require_bitsandbytes()
    placement = place(
        device=config.device,
        torch_dtype=config.torch_dtype,
        mixed_precision=config.mixed_precision,
        compute_dtype=config.bnb_4bit_compute_dtype,
        full_weights=config.method == "full",
    )
    check_group(config, placement)
    loss_hook = load_loss_hook(config.loss) if config.loss else None
    resolved = resolve(config.model_name_or_path, log=log)
    tokenizer = load_padding_tokenizer(resolved, trust_remote_code=config.trust_remote_code)
    data = prepare(config, tokenizer, log=log)
    sources = ", ".join(config.data_files or []) or f"dataset {config.data_name}"
    require_validated(config.validation_path, data.fingerprint, sources)
    train_rows, eval_rows, encoding = _encode(config, tokenizer, data, log)
    return _Checked(
        config, placement, loss_hook, resolved, tokenizer, data, train_rows, eval_rows, encoding
    )


# Every process of a run trains here (one process, or each rank of a group).
@collect_only_new(*MODEL_LIBRARIES, "transformers.trainer")
def _train(
    checked: _Checked,
    log: Log,
    callbacks: Sequence,
    started: float,
    resume_from: Path | None,
) -> TrainingResult | None:
    """Train (or, in a group, this process's share); None on the ranks that do not write."""
    config, placement, resolved = checked.config, checked.placement, checked.resolved
    from transformers import set_seed

    set_seed(config.seed)
    log(
        f"loading {resolved.name} for {config.method} on {placement.device} "
        f"(weights {placement.weights_dtype}, mixed precision {placement.mixed_precision or 'no'})"
    )
    model = load_base(resolved, config, placement)
    base_memory = model.get_memory_footprint()
    targets: list[str] = []
    cpu_kernels: dict = {}
    gemm = None
    cpu_float32 = (
        placement.device == "cpu"
        and placement.weights_dtype == "float32"
        and not placement.mixed_precision
    )
    if config.method in ADAPTER_METHODS:
        model, targets = attach_adapter(model, config)
        log(f"adapter on {', '.join(targets)}")
        if placement.device == "cpu":
            from slmops.training.dropout import use_lane_dropout

            if swapped := use_lane_dropout(model):
                log(f"LoRA dropout {config.lora_dropout}: {swapped} masks, 4 per random word")
            if cpu_float32:
                cpu_kernels, gemm = _fuse_lora_projections(model, log)
    fused_head = None
    if cpu_float32 and config.logits == "labeled" and checked.loss_hook is None:
        fused_head = _fuse_head_and_loss(model, gemm, log)
        cpu_kernels["fused_head_loss"] = fused_head is not None
    trainable, total = parameter_counts(model)
    log(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")

    trainer = make_trainer(
        config,
        placement,
        model=model,
        tokenizer=checked.tokenizer,
        train_rows=checked.train_rows,
        eval_rows=checked.eval_rows,
        loss_hook=checked.loss_hook,
        log=log,
        fused_head=fused_head,
    )
    for callback in callbacks:
        trainer.add_callback(callback)
    if resume_from is not None:
        log(f"resuming from {resume_from.name}")
    finished = finished_training(resume_from) if resume_from else None
    if finished:
        best = best_checkpoint(finished, config.folder.checkpoints, resume_from)
        log(f"training had reached its last step; restoring the best checkpoint, {best.name}")
        load_checkpoint_weights(trainer.model, best)
        trainer.state, runtime = finished, 0.0
    else:
        try:
            with kept_freed_memory():
                output = trainer.train(
                    resume_from_checkpoint=str(resume_from) if resume_from else None
                )
        except NonFiniteLossError as exc:
            raise _non_finite(exc, config) from None
        runtime = output.metrics["train_runtime"]

    state = trainer.state
    train_tokens = group_total(trainer, trainer.train_tokens)
    state_dict = full_state_dict(trainer) if config.fsdp else None
    if not trainer.is_world_process_zero():
        return None
    adapter_path, merged_path = _save_outputs(checked, trainer, log, state_dict)
    metrics = {
        "slmops_version": __version__,
        "model": resolved.name,
        "model_path": str(resolved.path),
        "method": config.method,
        "task_name": config.task_name,
        "target_modules": targets,
        "placement": placement.__dict__,
        "cpu_kernels": cpu_kernels,
        **loss_history(state.log_history),
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "epochs": state.epoch,
        "stopped_early": state.global_step < state.max_steps,
        "best_checkpoint": Path(state.best_model_checkpoint).name
        if state.best_model_checkpoint
        else None,
        "best_eval_loss": state.best_metric,
        "resumed_from": resume_from.name if resume_from else None,
        "train_tokens": train_tokens,
        "train_runtime_s": round(runtime, 3),
        "tokens_per_second": round(train_tokens / runtime, 2) if runtime else 0.0,
        "num_processes": config.num_processes,
        "global_batch_size": global_batch_size(config),
        "model_memory_mb": round(base_memory / 2**20, 2),
        "peak_memory_mb": peak_memory_mb(placement),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "dataset": {
            "fingerprint": checked.data.fingerprint,
            "train_examples": len(checked.data.train),
            "eval_examples": len(checked.data.eval),
            **checked.encoding,
        },
        "config": config.model_dump(mode="json"),
        "outputs": {
            "adapter": ADAPTER if adapter_path else None,
            "merged": MERGED if merged_path else None,
        },
        "wall_time_s": round(time.monotonic() - started, 3),
    }
    atomic_write_json(config.folder.metrics, metrics)
    log(
        f"done in {metrics['wall_time_s']:.0f}s: step {state.global_step}, train loss "
        f"{metrics['final_train_loss']:.4f}, best eval loss {state.best_metric:.4f}, "
        f"{metrics['tokens_per_second']:,.0f} tok/s -> {config.training_dir}"
    )
    return TrainingResult(config.training_dir, adapter_path, merged_path, metrics)


def _fuse_lora_projections(model, log: Log) -> tuple[dict, Gemm | None]:
    """Fuse the LoRA projections: what was chosen, for the run's metrics, and the GEMM."""
    from slmops.training.fused_lora import use_fused_lora

    fused, gemm = use_fused_lora(model)
    if not fused:
        return {"fused_lora_projections": 0}, None
    timed = f" (oneDNN timed at {gemm.onednn_over_mkl}x MKL)" if gemm.onednn_over_mkl else ""
    log(f"LoRA projections fused: {fused}; frozen weights' GEMM: {gemm.backend}{timed}")
    metrics = {
        "fused_lora_projections": fused,
        "frozen_weight_gemm": gemm.backend,
        "onednn_over_mkl": gemm.onednn_over_mkl,
    }
    return metrics, gemm


def _fuse_head_and_loss(model, gemm: Gemm | None, log: Log) -> FusedHead | None:
    from slmops.training.head_loss import CHUNK_TOKENS, fused_head_for

    fused = fused_head_for(model, gemm)
    if fused is not None:
        log(
            f"LM head computed with the loss, {CHUNK_TOKENS} tokens at a time "
            f"({fused.gemm.backend})"
        )
    return fused


def _encode(config: FinetuneConfig, tokenizer, data: PreparedData, log: Log):
    train, train_stats = encode_examples(
        data.train, tokenizer, config.max_seq_len, log=log, what="train"
    )
    evaluation, _ = encode_examples(data.eval, tokenizer, config.max_seq_len, log=log, what="eval")
    if not train:
        raise TrainingError(
            f"no training example keeps any answer token within max_seq_len="
            f"{config.max_seq_len}; raise --max_seq_len or shorten the prompts"
        )
    if not evaluation:
        raise TrainingError("no eval example keeps any answer token; raise --max_seq_len")
    if config.packing:
        train_bins, eval_bins = (
            pack(train, config.max_seq_len),
            pack(evaluation, config.max_seq_len),
        )
        log(
            f"packed {len(train)} training examples into {len(train_bins)} rows of up to "
            f"{config.max_seq_len} tokens"
        )
        train, evaluation = train_bins, eval_bins
    stats = {
        "truncated": train_stats.truncated,
        "dropped": train_stats.dropped,
        "longest_tokens": train_stats.longest,
    }
    return train, evaluation, stats


def _save_outputs(
    checked: _Checked, trainer, log: Log, state_dict: dict | None
) -> tuple[Path | None, Path | None]:
    """``state_dict``: the full weights gathered from an FSDP group (None otherwise)."""
    config, tokenizer = checked.config, checked.tokenizer
    adapter_path = merged_path = None
    if config.method in ADAPTER_METHODS:
        adapter_path = config.folder.adapter
        with atomic_directory(adapter_path) as tmp:
            trainer.model.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
        log(f"adapter saved to {adapter_path}")
    else:
        merged_path = config.folder.merged
        with atomic_directory(merged_path) as tmp:
            trainer.model.config.use_cache = True
            trainer.model.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
        log(f"model saved to {merged_path}")
    _release(trainer)
    if adapter_path and config.merge_adapter:
        merged_path = _merge(checked, adapter_path, log)
    return adapter_path, merged_path


def _merge(checked: _Checked, adapter_path: Path, log: Log) -> Path:
    config = checked.config
    merged_path = merge_into_base(
        checked.resolved,
        adapter_path,
        config.folder.merged,
        checked.tokenizer,
        trust_remote_code=config.trust_remote_code,
    )
    log(f"adapter merged into a float32 {checked.resolved.name} at {merged_path}")
    return merged_path


def _release(trainer) -> None:
    """Drop the training model before the merge loads a second copy of the base."""
    import torch

    trainer.model = trainer.model_wrapped = None
    trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _non_finite(exc: NonFiniteLossError, config: FinetuneConfig) -> TrainingError:
    last = last_checkpoint(config.folder.checkpoints)
    kept = (
        f"the last good checkpoint is {last} (a rerun with the same settings resumes from it)"
        if last
        else "no checkpoint was written before it"
    )
    return TrainingError(
        f"{exc}; training stopped and {kept}. Usual causes: a learning rate too high "
        f"(--learning_rate {config.learning_rate}), float16 overflow (use --mixed_precision "
        "bf16 or no), or a broken custom --loss"
    )
