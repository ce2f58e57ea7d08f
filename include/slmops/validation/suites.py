"""Validation suites: which Great Expectations checks run on a dataset, and their bounds.

Shipped suites live in include/configs/suites/NAME.yaml; a suite can also be any YAML
file with the same fields.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmops.config import load_yaml_model
from slmops.errors import ConfigError

SUITES_DIR = Path(__file__).resolve().parents[2] / "configs" / "suites"


class LengthBounds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(1, ge=0, description="shortest allowed text, in characters")
    max_chars: int = Field(4000, ge=1, description="longest allowed text, in characters")

    @model_validator(mode="after")
    def _ordered(self) -> LengthBounds:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars {self.min_chars} is above max_chars {self.max_chars}")
        return self


class SuiteConfig(BaseModel):
    """A validation suite: which Great Expectations checks run and their thresholds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="suite name, shown in reports")
    description: str = Field("", description="what data the suite is for")
    required_columns: list[str] = Field(
        default_factory=list, description="columns needed beyond those the template names"
    )
    label_column: str | None = Field(None, description="class label column (classification)")
    labels: list[str] | None = Field(None, description="the allowed label values")
    text_length: LengthBounds = Field(
        default_factory=LengthBounds, description="length bounds of every text column"
    )
    column_lengths: dict[str, LengthBounds] = Field(
        default_factory=dict, description="per-column length bounds that replace text_length"
    )
    max_seq_len: int = Field(1024, ge=8, description="token budget of one training example")
    max_truncated_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of rows allowed to exceed max_seq_len"
    )
    max_duplicate_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of rows allowed to repeat another row"
    )
    check_leakage: bool = Field(True, description="fail when an eval row also appears in train")
    min_rows: int = Field(10, ge=1, description="fewest training rows")
    min_eval_rows: int = Field(1, ge=1, description="fewest evaluation rows")
    min_rows_per_class: int = Field(1, ge=1, description="fewest training rows of each label")

    @model_validator(mode="after")
    def _labels_need_column(self) -> SuiteConfig:
        if self.labels is not None:
            if self.label_column is None:
                raise ValueError("labels are given but label_column is not")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels has repeated values")
        return self


def load_suite(name_or_path: str) -> SuiteConfig:
    """A suite by name (``include/configs/suites/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
            raise ConfigError(
                f"suite {name_or_path!r}: no such suite; shipped suites: {', '.join(shipped)}, "
                "or pass the path of a YAML file"
            )
    return load_yaml_model(path, SuiteConfig)
