"""The pipeline's parameters: the ``slm_finetune`` trigger form, typed once.

The Airflow form is generated from this model's JSON schema (types, limits, enums,
descriptions), and the ``prepare`` task validates a run's conf against it again, so a
value the form would refuse is refused from the REST API and the CLI too. Fields shared
with a stage config reuse that config's definition.

The defaults assume nothing about the data: no column names, the ``default`` suite, the
template kind chosen by what is given. A run names its data, its published name and
its columns; the demo task's values are ``DEMO_PARAMS``, the demo DAGs' form defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from slmops.config import SettingsModel, describe_validation_error, split_commas
from slmops.data.config import DataConfig
from slmops.errors import ConfigError
from slmops.evaluation.config import GateThresholds
from slmops.export.targets import DEFAULT_TARGET, TARGETS
from slmops.model_store import DEFAULT_MODEL
from slmops.training.config import FinetuneConfig, Method

TargetName = Literal[tuple(TARGETS)]  # type: ignore[valid-type]
_LIST_FIELDS = ("data_files", "targets", "target_modules", "modules_to_save")
_training = FinetuneConfig.model_fields
_data = DataConfig.model_fields
_gates = GateThresholds.model_fields


# Form labels where "Lora r" would not do; the rest read as their names ("Max steps").
_TITLES = {
    "model_name": "Published name",
    "model_name_or_path": "Base model",
    "data_name": "Hub dataset",
    "lora_r": "LoRA rank (r)",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "per_device_train_batch_size": "Batch size",
    "max_seq_len": "Max sequence length (tokens)",
    "num_processes": "Training processes",
    "fsdp": "FSDP (shard the model across GPUs)",
    "require_approval": "Require approval before publishing",
    "approval_timeout_hours": "Approval timeout (hours)",
    "targets": "ONNX targets",
    "suite": "Validation suite",
}


def _title(name: str, field: object) -> str:
    return _TITLES.get(name) or name.replace("_", " ").capitalize()


class PipelineParams(SettingsModel):
    """One ``slm_finetune`` run: data, training, gates and export targets."""

    model_config = ConfigDict(extra="forbid", field_title_generator=_title)

    # Model and data
    model_name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="name the result is published under, as the Asset slmops://models/NAME "
        "(lower-case letters, digits, '.', '_' and '-')",
    )
    model_name_or_path: str = Field(
        DEFAULT_MODEL,
        description="base model: a bundled name (smollm2-135m-instruct), a Hugging Face "
        "folder under the data roots, or a hub id (needs a network)",
    )
    data_files: list[str] | None = Field(
        None,
        description="JSON, JSONL, CSV or Parquet files under the data roots (relative names "
        "are looked up in each root); leave empty to use data_name",
    )
    data_name: str | None = _data["data_name"]
    train_split: str = _data["train_split"]
    eval_split: str | None = _data["eval_split"]
    eval_fraction: float = _data["eval_fraction"]
    template_kind: Literal["chat", "template", "text"] | None = Field(
        None,
        description="chat: the tokenizer's chat template over input_field/output_field; "
        "template: text_template with {column} placeholders; text: text_field holds the "
        "text; empty: template when text_template is given, text when text_field is, else chat",
    )
    text_template: str | None = _data["text_template"]
    text_field: str | None = _data["text_field"]
    input_field: str | None = Field(None, description="user-turn column (chat)")
    output_field: str | None = Field(None, description="assistant-turn column (chat)")
    label_field: str | None = Field(
        None,
        description="class label column of a classification task (accuracy, stratified "
        "held-out split); empty for generation tasks",
    )
    system_prompt: str | None = Field(None, description="system message (chat)")
    suite: str = Field(
        "default",
        description="Great Expectations suite: a shipped name (default, phrase_tones, "
        "instructions) or a suite YAML under the data roots",
    )

    # Training
    method: Method = _training["method"]
    lora_r: int = _training["lora_r"]
    lora_alpha: float = _training["lora_alpha"]
    lora_dropout: float = _training["lora_dropout"]
    target_modules: list[str] | None = _training["target_modules"]
    modules_to_save: list[str] | None = _training["modules_to_save"]
    max_steps: int = Field(200, ge=1, le=1_000_000, description="optimizer steps")
    per_device_train_batch_size: int = Field(8, ge=1, le=1024, description="rows per step")
    learning_rate: float = Field(3e-4, gt=0, le=1.0, description="peak learning rate")
    gradient_accumulation_steps: int = _training["gradient_accumulation_steps"]
    weight_decay: float = _training["weight_decay"]
    max_seq_len: int = Field(128, ge=8, le=32768, description="tokens per example")
    eval_steps: int = _training["eval_steps"]
    early_stopping_patience: int | None = _training["early_stopping_patience"]
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="gpu sends training to the workers of queue 'gpu' (CUDA); cpu and auto "
        "run on the default queue",
    )
    num_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="data-parallel training processes on the worker that trains (torchrun): "
        "one per GPU with device gpu, or CPU processes. Batch size is per process: the "
        "global batch is batch size x processes x gradient accumulation steps",
    )
    fsdp: bool = _training["fsdp"]

    # Gates
    min_improvement: float = _gates["min_improvement"]
    max_loss_gap: float = _gates["max_loss_gap"]
    min_primary_metric: float | None = Field(
        None,
        ge=0.0,
        description="lowest acceptable fine-tuned score of the primary metric (default: "
        "the task's: accuracy 0.8 for classification)",
    )
    max_export_degradation: float = _gates["max_export_degradation"]
    promotion_margin: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="champion/challenger DAGs: the new model replaces the published one only "
        "when its primary metric is better by at least this much on the same eval rows "
        "(0 promotes a tie)",
    )

    # Export
    targets: list[TargetName] = Field(  # type: ignore[valid-type]
        [DEFAULT_TARGET],
        min_length=1,
        description="ONNX targets, each optimized, parity-checked and benchmarked in its own "
        "task; gpu-* targets run on queue 'gpu'",
    )
    benchmark: bool = Field(True, description="time each export against PyTorch")

    # Review
    require_approval: bool = Field(
        False,
        description="a reviewer approves or rejects publishing in the Airflow UI (the approve "
        "task shows the gates, the scores and sample answers); reject keeps the model out",
    )
    approval_timeout_hours: float = Field(
        72.0,
        gt=0,
        le=720,
        description="hours the approve task waits for a reviewer (holding no worker slot); "
        "no answer by then counts as reject",
    )

    _split_lists = field_validator(*_LIST_FIELDS, mode="before")(split_commas)

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _check_template(self) -> PipelineParams:
        chosen = self.template_kind is None
        if chosen:
            self.template_kind = _template_kind(self)
        missing = [name for name in _NEEDED[self.template_kind] if not getattr(self, name)]
        if missing:
            kind = f"template_kind {self.template_kind}"
            if chosen:
                kind += " (chosen as neither text_template nor text_field is given)"
            hint = f" ({_CHAT_HINT})" if self.template_kind == "chat" else ""
            raise ValueError(f"{kind} needs {' and '.join(missing)}{hint}")
        if bool(self.data_files) == bool(self.data_name):
            raise ValueError("give data_files (local files) or data_name (a hub dataset), not both")
        return self


# What each template kind reads.
_NEEDED = {
    "chat": ("input_field", "output_field"),
    "template": ("text_template",),
    "text": ("text_field",),
}
_CHAT_HINT = (
    "input_field and output_field name the columns of the user's and the assistant's turns; "
    "or give text_template, e.g. '{question} -> {answer}', or text_field instead"
)


def _template_kind(params: PipelineParams) -> str:
    """The template kind that what is given asks for: a text_template or a text_field,
    else the chat template."""
    given = [name for name in ("text_template", "text_field") if getattr(params, name)]
    if len(given) > 1:
        raise ValueError(
            "text_template and text_field are both given; keep one, or choose with template_kind"
        )
    return {"text_template": "template", "text_field": "text"}[given[0]] if given else "chat"


# The demo task (name the tone of a phrase), the demo DAGs' form defaults: what a run of
# slm_finetune gets when nothing is changed (`make demo`).
_TONE_PROMPT = (
    "Name the tone of the user's phrase with one word: joyful, angry, sad, fearful, "
    "grateful or curious."
)
DEMO_PARAMS: dict[str, Any] = {
    "model_name": "phrase-tones",
    "data_files": ["phrase_tones.jsonl"],
    "template_kind": "chat",
    "input_field": "phrase",
    "output_field": "tone",
    "label_field": "tone",
    "system_prompt": _TONE_PROMPT,
    "suite": "phrase_tones",
}


# The trigger form's sections, in order; every field appears in exactly one.
FORM_SECTIONS: dict[str, tuple[str, ...]] = {
    "Model and data": (
        "model_name",
        "model_name_or_path",
        "data_files",
        "data_name",
        "train_split",
        "eval_split",
        "eval_fraction",
        "template_kind",
        "text_template",
        "text_field",
        "input_field",
        "output_field",
        "label_field",
        "system_prompt",
        "suite",
    ),
    "Training": (
        "method",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "modules_to_save",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "weight_decay",
        "max_seq_len",
        "eval_steps",
        "early_stopping_patience",
        "device",
        "num_processes",
        "fsdp",
    ),
    "Gates": (
        "min_improvement",
        "max_loss_gap",
        "min_primary_metric",
        "max_export_degradation",
        "promotion_margin",
    ),
    "Export": ("targets", "benchmark"),
    "Review": ("require_approval", "approval_timeout_hours"),
}
# Fields that only the single-model pipeline's DAGs show (not the multi-adapter one).
REVIEW_FIELDS = FORM_SECTIONS["Review"]


def split_settings(conf: dict, model: type[BaseModel]) -> tuple[BaseModel, dict]:
    """A DAG's own settings (``model``'s fields, validated) and the rest of its conf, the
    pipeline params. HPO's search and the multi-adapter list live beside the form's."""
    rest = dict(conf)
    own = {name: rest.pop(name) for name in model.model_fields if name in rest}
    try:
        return model.model_validate(own), rest
    except ValidationError as exc:
        message = describe_validation_error(exc, source=None, flag_style=False)
        raise ConfigError(f"invalid params: {message}") from None


def field_value(name: str, value: Any) -> Any:
    """``value`` as the param ``name`` holds it, checked on its own (type, limits, comma
    lists): a search varies one param at a time of a run given elsewhere."""
    field = PipelineParams.model_fields[name]
    value = split_commas(value) if name in _LIST_FIELDS else value
    return TypeAdapter(Annotated[field.annotation, field]).validate_python(value)


def parse(conf: dict) -> PipelineParams:
    """A run's params, every problem named by its param."""
    try:
        return PipelineParams.model_validate(conf)
    except ValidationError as exc:
        message = describe_validation_error(exc, source=None, flag_style=False)
        raise ConfigError(f"invalid params: {message}") from None


# -- params that an Asset event may carry

# What an event's extra["params"] may set by default: where the data is. What is
# published (model_name), how it is judged (the gates) and everything else come from the
# DAG; a DAG declares its own list (PrepareRunOperator's event_params) if it needs another.
EVENT_PARAMS: tuple[str, ...] = ("data_files", "train_split", "eval_split")
# Never from an event, whatever a DAG declares.
NEVER_FROM_EVENTS = frozenset({"model_name", *FORM_SECTIONS["Gates"]})


def check_event_allowlist(allowed: Any, where: str) -> tuple[str, ...]:
    """A DAG's list of event params: known form fields, none of NEVER_FROM_EVENTS."""
    names = (allowed,) if isinstance(allowed, str) else tuple(allowed or ())
    for name in names:
        if name not in PipelineParams.model_fields:
            raise ConfigError(f"{where}: event param {name!r} is not a param of the form")
        if name in NEVER_FROM_EVENTS:
            raise ConfigError(
                f"{where}: event param {name!r} may not be set by an event: model_name and "
                "the gates always come from the DAG; drop it from the list"
            )
    return names


def event_overrides(params: Any, *, allowed: tuple[str, ...], source: str) -> dict:
    """The params an event's extra["params"] sets (``source`` names the event): a dict of
    keys in ``allowed`` only; the values are checked later, like the form's."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(
            f"{source}: extra['params'] must be an object of params, not "
            f"{type(params).__name__}; nothing was planned"
        )
    refused = sorted(name for name in params if name not in allowed)
    if refused:
        listed = ", ".join(allowed) or "(none)"
        raise ConfigError(
            f"{source}: extra['params'] sets {refused[0]!r}, which an event may not set; "
            f"this DAG lets events set only: {listed}. Change other params in the DAG or "
            "trigger a run with them from the form; nothing was planned"
        )
    return dict(params)
