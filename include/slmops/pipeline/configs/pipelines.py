"""Pipeline configs: one YAML file per DAG, in include/configs/pipelines/.

    dag_id: slm_tone                 # optional, default slm_<file stem>
    description: Tone of a phrase    # shown on the DAG's page
    schedule: "0 3 * * 1"            # optional cron; omitted: triggered by hand or REST
    on_data_change: true             # also start when a data file's Asset gets an event
    champion_challenger: true        # publish only a model better than the published one
    tags: [tones]
    params:                          # the trigger form's defaults (PipelineParams fields)
      model_name: tones
      method: lora
      targets: [cpu-int4, cpu-int8]

The same file runs without Airflow: ``slmops run --config FILE``. Loading checks every
field, params included; in Airflow a file that fails to load becomes a paused DAG that
names the file and the field (its one task fails with the error), and every other file
still becomes its DAG.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slmops.config import load_yaml_model
from slmops.errors import ConfigError
from slmops.pipeline.params import PipelineParams

PIPELINES_DIR = Path(__file__).resolve().parents[3] / "configs" / "pipelines"
# Airflow's cron presets.
CRON_PRESETS = frozenset(
    {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
)


class PipelineSpec(BaseModel):
    """One config-driven pipeline DAG."""

    model_config = ConfigDict(extra="forbid")

    dag_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,200}$", description="default: slm_<file stem>"
    )
    description: str = Field("", description="what the pipeline is for")
    schedule: str | None = Field(None, description="cron expression (5 fields) or @daily...")
    on_data_change: bool = Field(
        False, description="start when the Asset slmops://data/<stem> of a data file changes"
    )
    champion_challenger: bool = Field(
        False, description="publish only when the new model beats the published one"
    )
    tags: list[str] = Field(default_factory=list)
    params: PipelineParams = Field(description="the run's defaults (the trigger form's)")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter  # Airflow's own cron parser

        if value is None or value in CRON_PRESETS:
            return value
        if value.startswith("@"):
            raise ValueError(f"{value!r} is not a cron preset; use one of {sorted(CRON_PRESETS)}")
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid 5-field cron expression (minute hour day-of-month "
                "month day-of-week, e.g. '0 3 * * 1')"
            )
        return value

    def resolved_dag_id(self, path: Path) -> str:
        return self.dag_id or stem_dag_id(path)

    def param_defaults(self) -> dict[str, Any]:
        """The params as the trigger form's defaults (JSON values)."""
        return self.params.model_dump(mode="json")


def load_pipeline(path: Path) -> PipelineSpec:
    """Read one pipeline config; errors name the file and the dotted field."""
    return load_yaml_model(Path(path), PipelineSpec)


def pipeline_files(folder: Path = PIPELINES_DIR) -> list[Path]:
    return sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")])


def load_pipelines(
    folder: Path = PIPELINES_DIR, *, broken: dict[Path, str] | None = None
) -> dict[str, tuple[Path, PipelineSpec]]:
    """Every pipeline config of ``folder`` by DAG id; two files with one DAG id are refused.

    Without ``broken`` the first file that fails to load raises. With it, each such file
    is recorded there (path -> the error, naming the file and field) and the others load.
    """
    specs: dict[str, tuple[Path, PipelineSpec]] = {}
    for path in pipeline_files(folder):
        try:
            spec = load_pipeline(path)
            dag_id = spec.resolved_dag_id(path)
            if dag_id in specs:
                raise ConfigError(f"{path}: dag_id {dag_id} is also {specs[dag_id][0]}'s")
        except (ConfigError, OSError, ValueError) as exc:  # ValueError: not UTF-8
            if broken is None:
                raise
            broken[path] = str(exc) if isinstance(exc, ConfigError) else f"{path}: {exc}"
            continue
        specs[dag_id] = (path, spec)
    return specs


def stem_dag_id(path: Path) -> str:
    """The DAG id a file gets when it names none (``slm_<file stem>``)."""
    return f"slm_{re.sub(r'[^A-Za-z0-9_.-]', '_', Path(path).stem)}"
