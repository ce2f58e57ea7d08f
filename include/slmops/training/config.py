"""Settings of one fine-tuning run: the data settings plus model, method and trainer flags.

One flat model, so ``slmops finetune --learning_rate 1e-4``, ``learning_rate: 1e-4`` in a
``--config`` YAML and a DAG Param are the same name with the same range. Names follow
``olive finetune`` and transformers' ``TrainingArguments``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from slmops.config import split_commas
from slmops.data.config import DataConfig
from slmops.layout import TrainingLayout
from slmops.model_store import DEFAULT_MODEL

Method = Literal["lora", "qlora", "dora", "full"]
ADAPTER_METHODS = ("lora", "qlora", "dora")
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
)
_LOSS_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_TASK_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")

# Settings that change how a run reports or where it keeps things, not what it learns:
# a retry may change them and still resume its checkpoints.
COSMETIC_FIELDS = frozenset(
    {
        "output_path",
        "overwrite",
        "logging_steps",
        "report_to",
        "save_total_limit",
        "per_device_eval_batch_size",
        "merge_adapter",
        "logits",  # the same loss either way
        "validation_path",  # what the data are checked against, not what is learned
    }
)


class FinetuneConfig(DataConfig):
    """Everything ``slmops finetune`` needs; defaults suit LoRA on a small model."""

    model_name_or_path: str = Field(
        DEFAULT_MODEL, description="bundled model name, local Hugging Face folder or hub id"
    )
    trust_remote_code: bool = Field(False, description="run Python code shipped with the model")
    output_path: Path = Field(
        description="training folder: checkpoints, adapter/, merged/, metrics"
    )
    task_name: str | None = Field(
        None,
        description="adapter name (e.g. classification); the run goes to OUTPUT_PATH/TASK_NAME "
        "so several adapters of one base share an output path",
    )
    overwrite: bool = Field(
        False, description="start over even if the output path holds a run with other settings"
    )
    validation_path: Path | None = Field(
        None,
        description="validation.json of `slmops validate` (or its folder): refuse to train "
        "unless the data read now are the data it validated (same fingerprint)",
    )
    method: Method = Field("lora", description="lora, qlora (4-bit base), dora or full")
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    lora_alpha: float = Field(32.0, gt=0, le=4096, description="LoRA scaling numerator")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] | None = Field(
        None,
        description="module names that get adapters, comma-separated (default: every linear "
        "layer of the attention and MLP blocks)",
    )
    modules_to_save: list[str] | None = Field(
        None, description="modules trained in full next to the adapter, e.g. lm_head"
    )
    max_steps: int | None = Field(
        None, ge=1, description="optimizer steps; overrides --num_train_epochs when given"
    )
    num_train_epochs: float = Field(3.0, gt=0, le=1000, description="passes over the data")
    per_device_train_batch_size: int = Field(8, ge=1, le=4096, description="rows per step")
    per_device_eval_batch_size: int | None = Field(
        None, ge=1, le=4096, description="rows per eval batch (default: the training batch)"
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=1024, description="micro-batches summed into one optimizer step"
    )
    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="peak learning rate")
    lr_scheduler_type: Literal[SCHEDULERS] = Field(  # type: ignore[valid-type]
        "linear", description="learning-rate schedule: " + ", ".join(SCHEDULERS)
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="share of steps warming up")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping (0 turns it off)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: less memory, slower steps"
    )
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="dtype of the frozen base weights (auto: bfloat16 or float16 on a GPU, "
        "float32 on CPU and for full fine-tuning)",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="autocast (auto: bf16 or fp16 on a GPU, none on CPU)"
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="where to train (auto: a GPU when one is visible)"
    )
    num_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="data-parallel training processes on this machine, launched with "
        "torchrun: one per GPU (NCCL) on a GPU, or CPU processes (gloo). The batch size is "
        "per process: the global batch is per_device_train_batch_size x num_processes x "
        "gradient_accumulation_steps",
    )
    fsdp: bool = Field(
        False,
        description="shard weights, gradients and optimizer state across the GPU processes "
        "(FSDP2) for a model that does not fit one GPU; lora or full, GPUs only, "
        "num_processes 2 or more",
    )
    max_seq_len: int = Field(
        1024, ge=8, le=131072, description="longest example in tokens; longer ones are cut"
    )
    padding: Literal["longest", "max_length"] = Field(
        "longest",
        description="longest: pad each batch to its longest row; max_length: pad every row "
        "to --max_seq_len (slower, shown for comparison with olive finetune)",
    )
    logits: Literal["labeled", "all"] = Field(
        "labeled",
        description="labeled: the LM head computes logits only where the next token is "
        "trained on (the same loss, less work); all: at every position, as olive finetune "
        "does (shown for comparison). A custom --loss always gets all logits",
    )
    packing: bool = Field(
        False,
        description="pack several short examples into one row of up to --max_seq_len "
        "tokens; they do not attend to each other",
    )
    logging_steps: int = Field(10, ge=1, description="steps between progress lines")
    eval_steps: int = Field(50, ge=1, description="steps between evaluations on the eval split")
    save_steps: int | None = Field(
        None, ge=1, description="steps between checkpoints (default: --eval_steps)"
    )
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept (the best is kept too)")
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="stop after this many evaluations without a better eval loss "
        "(default: off); the best checkpoint is restored either way",
    )
    early_stopping_threshold: float = Field(
        0.0, ge=0.0, description="smallest eval-loss drop that counts as better"
    )
    report_to: Literal["none", "tensorboard"] = Field(
        "none", description="tensorboard writes event files under OUTPUT_PATH/tensorboard"
    )
    loss: str | None = Field(
        None,
        description="custom loss as module.path:callable, called as "
        "fn(outputs, labels, num_items_in_batch=...) (a class is instantiated first)",
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="QLoRA 4-bit type")
    bnb_4bit_use_double_quant: bool = Field(
        True, description="QLoRA: quantize the quantization constants too"
    )
    bnb_4bit_compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="QLoRA matmul dtype (auto: bfloat16 on a GPU, float32 on CPU)"
    )
    merge_adapter: bool = Field(
        True, description="also write merged/: the adapter merged into a float32 base"
    )
    seed: int = Field(
        42, ge=0, description="seed of the held-out split, shuffling, initialisation, dropout"
    )

    _split_lists = field_validator("target_modules", "modules_to_save", mode="before")(split_commas)

    @field_validator("task_name")
    @classmethod
    def _check_task_name(cls, value: str | None) -> str | None:
        if value is not None and not _TASK_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a folder-safe name; use letters, digits, '.', '_' or '-'"
            )
        return value

    @field_validator("loss")
    @classmethod
    def _check_loss(cls, value: str | None) -> str | None:
        if value is not None and not _LOSS_SPEC.match(value):
            raise ValueError(
                f"{value!r} is not module.path:callable, e.g. my_project.losses:contrastive"
            )
        return value

    @model_validator(mode="after")
    def _check_training(self) -> FinetuneConfig:
        if self.save_steps is not None and self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps "
                f"({self.eval_steps}) so the best checkpoint can be restored"
            )
        if self.method == "full" and (self.target_modules or self.modules_to_save):
            raise ValueError("target_modules and modules_to_save only apply to adapter methods")
        if self.packing and self.padding == "max_length":
            raise ValueError("packing already fills rows to max_seq_len; drop padding=max_length")
        if self.fsdp and self.num_processes < 2:
            raise ValueError("fsdp shards the model across processes: set num_processes 2 or more")
        if self.fsdp and self.method not in ("lora", "full"):
            raise ValueError(
                f"fsdp works with method lora or full, not {self.method}; use plain data "
                "parallelism (fsdp off) for qlora and dora"
            )
        return self

    @property
    def training_dir(self) -> Path:
        """Where this run's files go: the output path, or its task_name sub-folder."""
        return self.output_path / self.task_name if self.task_name else self.output_path

    @property
    def folder(self) -> TrainingLayout:
        """The training folder's files (checkpoints, adapter, metrics...)."""
        return TrainingLayout(self.training_dir)

    @property
    def checkpoint_steps(self) -> int:
        return self.save_steps or self.eval_steps

    def identity(self) -> dict:
        """The settings that decide what is learned (compared when a run resumes)."""
        return self.model_dump(mode="json", exclude=set(COSMETIC_FIELDS))
