"""Settings of ``slmops auto-opt`` (and ``optimize()``, and the DAG's optimize task).

Flag names follow Olive's ``olive auto-opt``: ``--model_name_or_path``, ``--adapter_path``,
``--device``, ``--provider``, ``--precision``, ``--use_ort_genai``, ``--output_path``;
``--target`` names a whole (device, provider, precision) at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from slmops.config import SettingsModel, split_commas
from slmops.errors import ConfigError
from slmops.evaluation.config import GateThresholds
from slmops.export.targets import PRECISIONS, TARGETS, Target, resolve_target
from slmops.layout import ONNX_FOLDER


def parse_key_values(value):
    """``"a=1,b=x:y,z:w"`` (a flag or form field) -> ``{"a": "1", "b": "x:y,z:w"}``: a part
    without ``=`` continues the previous value, as in the builder's own option syntax."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    key = None
    for item in split_commas(value) or []:
        name, sep, text = item.partition("=")
        if sep and name.strip():
            key = name.strip()
            pairs[key] = text.strip()
        elif key is not None:
            pairs[key] += "," + item
        else:
            raise ValueError(f"{item!r} is not KEY=VALUE")
    return pairs


def require_parent(out: Path, flag: str = "--output_path") -> Path:
    """``out`` when its parent folder exists: a typo in a path should not silently create
    a tree somewhere unexpected."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(
            f"{flag} {out}: its parent folder {out.parent} does not exist; create it first or "
            "choose another output path"
        )
    return out


class TargetSettings(SettingsModel):
    """The Olive-style flags that pick a deployment target (or ``--target`` at once)."""

    model_config = ConfigDict(extra="forbid")

    target: Literal[tuple(TARGETS)] | None = Field(  # type: ignore[valid-type]
        None, description="deployment target, e.g. cpu-int4 (see `slmops targets`)"
    )
    device: Literal["cpu", "gpu"] | None = Field(None, description="cpu or gpu (default: cpu)")
    provider: Literal["CPUExecutionProvider", "CUDAExecutionProvider"] | None = Field(
        None, description="onnxruntime execution provider (default: the device's)"
    )
    precision: Literal[PRECISIONS] | None = Field(  # type: ignore[valid-type]
        None, description="int4 (default), int8, fp16 (GPU) or fp32"
    )

    def resolved_target(self) -> Target:
        return resolve_target(
            self.target, device=self.device, provider=self.provider, precision=self.precision
        )


class AutoOptConfig(TargetSettings):
    model_name_or_path: str | None = Field(
        None,
        description="model to export (default: the run's fine-tuned model); bundled name, "
        "local folder or hub id",
    )
    adapter_path: Path | None = Field(
        None,
        description="LoRA/QLoRA adapter merged into the full-precision base before export "
        "(never into 4-bit weights)",
    )
    run_path: Path | None = Field(
        None,
        description="a finished `slmops finetune` output path: its fine-tuned model is "
        "exported and its eval set scores the export (parity)",
    )
    trust_remote_code: bool = Field(False, description="run Python code shipped with the model")
    use_ort_genai: bool = Field(
        True,
        description="export with onnxruntime-genai's model builder (a folder onnxruntime-genai "
        "runs); false exports with torch.onnx for plain onnxruntime",
    )
    builder_options: dict[str, str] | None = Field(
        None,
        description="onnxruntime-genai builder --extra_options as KEY=VALUE,... e.g. "
        "block_size=64,matmul_mixed_precision=last_matmul:int8",
    )
    output_path: Path | None = Field(
        None,
        description="folder for the ONNX model and its parity and benchmark results "
        "(default: RUN_PATH/onnx/TARGET); its parent must exist",
    )
    parity: bool = Field(
        True,
        description="score the export against the PyTorch model (eval set and token agreement)",
    )
    benchmark: bool = Field(
        True, description="measure first-token latency, decode speed, size and memory vs PyTorch"
    )
    max_export_degradation: float = GateThresholds.model_fields["max_export_degradation"]
    fail_on_gates: bool = GateThresholds.model_fields["fail_on_gates"]
    agreement_prompts: int = Field(
        16, ge=0, le=1000, description="eval prompts in the token-agreement set (plus 4 general)"
    )
    benchmark_prompts: int = Field(
        5, ge=1, le=100, description="prompts timed per model (medians are reported)"
    )
    benchmark_rounds: int = Field(
        2,
        ge=1,
        le=20,
        description="times each model is measured, alternating with the others (medians)",
    )
    benchmark_new_tokens: int = Field(
        64, ge=2, le=4096, description="tokens each timed prompt decodes (EOS suppressed)"
    )

    @field_validator("builder_options", mode="before")
    @classmethod
    def _parse_options(cls, value):
        return parse_key_values(value)

    @model_validator(mode="after")
    def _check_sources(self) -> AutoOptConfig:
        if self.run_path is None and self.model_name_or_path is None:
            raise ValueError("give model_name_or_path or run_path (a fine-tuning run)")
        if self.run_path is None and self.output_path is None:
            raise ValueError("give output_path (there is no run_path to put the model in)")
        return self

    def output_dir(self, target: Target) -> Path:
        """The output folder (its parent must already exist)."""
        if self.output_path is None:
            return Path(self.run_path) / ONNX_FOLDER / target.name
        return require_parent(self.output_path)


class GenerateAdapterConfig(TargetSettings):
    """Settings of ``slmops generate-adapter`` (Olive's ``generate-adapter``)."""

    base_model_path: str = Field(
        description="the base every adapter was trained on: bundled name, local folder or hub id"
    )
    adapter_paths: list[Path] = Field(
        description="LoRA adapter folders (a run's adapter/), comma-separated"
    )
    adapter_names: list[str] | None = Field(
        None,
        description="one name per adapter, comma-separated (default: each run's folder name)",
    )
    output_path: Path = Field(
        description="folder for the base model, one NAME.onnx_adapter per adapter and "
        "adapters.json; its parent must exist"
    )

    _split_paths = field_validator("adapter_paths", "adapter_names", mode="before")(split_commas)
