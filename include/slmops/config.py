"""Typed settings shared by the CLI, YAML files and (later) DAG Params.

Field names follow Microsoft Olive's CLI flags (``--data_files``, ``--text_template``...),
so a flag, a YAML key and a DAG Param are the same word. Every field carries a
description: it becomes the ``--help`` text and the trigger-form hint.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slmops.errors import SlmopsError

# "train", "train[:4096]", "train[10%:20%]", "train[:100]+test[:10]" (datasets' syntax).
_SPLIT_PART = r"[A-Za-z_][\w.-]*(\[-?\d*%?:-?\d*%?\](\(\w+\))?)?"
SPLIT_SPEC = re.compile(rf"^{_SPLIT_PART}(\+{_SPLIT_PART})*$")
SUITES_DIR = Path(__file__).resolve().parents[1] / "configs" / "suites"
VALIDATION_REPORT = "validation.json"  # what `slmops validate -o DIR` writes into DIR
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


class ConfigError(SlmopsError):
    """A setting is missing, malformed or out of range."""


def decode_escapes(text: str) -> str:
    r"""Turn the two-character ``\n``, ``\t`` and ``\\`` a shell or UI form passes into
    the characters they stand for; other backslashes are kept as typed."""
    return re.sub(r"\\([nt\\])", lambda match: _ESCAPES[match.group(1)], text)


def split_commas(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]`` for list settings typed as one flag or form field."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        value = [str(item).strip() for item in value if str(item).strip()]
        return value or None
    return value


def template_placeholders(template: str) -> list[str]:
    """Column names a ``{column}`` template refers to, in order of first use."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"malformed template ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name or not name.isidentifier():
            raise ValueError(
                f"placeholder {{{name}}} is not a column name; placeholders look like {{phrase}}"
            )
        if name not in names:
            names.append(name)
    return names


class DataConfig(BaseModel):
    """Where the training data comes from, how it is split and how rows become text."""

    model_config = ConfigDict(extra="forbid")

    data_name: str | None = Field(
        None,
        description="Hugging Face hub dataset id (needs a network), or a local dataset folder",
    )
    data_files: list[str] | None = Field(
        None,
        description="local JSON, JSONL, CSV or Parquet files or folders, comma-separated",
    )
    train_subset: str | None = Field(None, description="hub dataset configuration for training")
    eval_subset: str | None = Field(None, description="hub dataset configuration for evaluation")
    data_revision: str | None = Field(None, description="hub dataset revision (branch, tag, sha)")
    train_split: str = Field(
        "train", description='training split, with slicing: "train", "train[:4096]", "train[:80%]"'
    )
    eval_split: str | None = Field(
        None,
        description='evaluation split, e.g. "train[4096:4224]"; without one, '
        "--eval_fraction of the training rows is held out",
    )
    eval_fraction: float = Field(
        0.1, gt=0.0, le=0.5, description="share of training rows held out when no --eval_split"
    )
    seed: int = Field(42, ge=0, description="seed of the held-out split")
    max_samples: int | None = Field(
        None, ge=1, description="use at most this many training rows (default: all of them)"
    )
    max_eval_samples: int | None = Field(
        None, ge=1, description="use at most this many evaluation rows (default: all of them)"
    )
    text_field: str | None = Field(None, description="column that already holds the whole text")
    text_template: str | None = Field(
        None,
        description=r"template with {column} placeholders, e.g. 'User: {input}\nAssistant: "
        r"{output}'; \n and \t are decoded",
    )
    use_chat_template: bool = Field(
        False,
        description="render rows with the tokenizer's chat template (a messages column, or "
        "input/output columns as user/assistant turns)",
    )
    completion_field: str | None = Field(
        None,
        description="template placeholder where the answer starts (default: the last one); "
        "the text before it is the prompt, masked from the loss",
    )
    label_field: str | None = Field(
        None,
        description="class label column of a classification task; the held-out split is "
        "stratified by it",
    )
    messages_field: str = Field("messages", description="chat messages column (chat template)")
    input_field: str = Field("input", description="user-turn column (chat template)")
    output_field: str = Field("output", description="assistant-turn column (chat template)")
    system_prompt: str | None = Field(
        None, description="system message put first in every chat (chat template)"
    )

    _split_commas = field_validator("data_files", mode="before")(split_commas)

    @field_validator("train_split", "eval_split")
    @classmethod
    def _check_split(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.replace(" ", "")
            if not SPLIT_SPEC.match(value):
                raise ValueError(
                    f"{value!r} is not a split; write a split name with an optional slice, "
                    'e.g. "train", "train[:4096]", "train[4096:4224]" or "train[:90%]"'
                )
        return value

    @field_validator("text_template", "system_prompt")
    @classmethod
    def _decode_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return decode_escapes(value)

    @model_validator(mode="after")
    def _check_choices(self) -> DataConfig:
        if (self.data_name is None) == (self.data_files is None):
            raise ValueError("give exactly one of data_name (a hub dataset) or data_files")
        kinds = [
            name
            for name, chosen in (
                ("text_field", self.text_field is not None),
                ("text_template", self.text_template is not None),
                ("use_chat_template", self.use_chat_template),
            )
            if chosen
        ]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of text_field, text_template or use_chat_template"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        if self.text_template is not None:
            names = template_placeholders(self.text_template)
            if not names:
                raise ValueError("text_template has no {column} placeholder")
            if self.completion_field is not None and self.completion_field not in names:
                raise ValueError(
                    f"completion_field {self.completion_field!r} is not a placeholder of "
                    f"text_template (placeholders: {', '.join(names)})"
                )
        elif self.completion_field is not None:
            raise ValueError("completion_field only applies to text_template")
        return self


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


def describe_validation_error(
    exc: ValidationError,
    *,
    source: str | None,
    flag_style: bool,
    file_keys: set[str] | None = None,
) -> str:
    """One line per problem, naming the flag (``--eval_fraction``) or the YAML field.

    With ``file_keys`` (flags overlaid on a file), a problem with a key that came from the
    file names ``source: key`` and one that came from a flag names ``--key``.
    """
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not where:
            lines.append(message)
        elif file_keys is not None:
            from_file = error["loc"][0] in file_keys
            lines.append(f"{source}: {where}: {message}" if from_file else f"--{where}: {message}")
        elif flag_style:
            lines.append(f"--{where}: {message}")
        else:
            lines.append(f"{where}: {message}")
    prefix = f"{source}: " if source and file_keys is None else ""
    return prefix + "; ".join(lines)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML settings file; errors name the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return raw


def load_yaml_model(path: Path, model: type[BaseModel]) -> Any:
    """Read one YAML file into ``model``; errors name the file and the field."""
    raw = read_yaml_mapping(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        message = describe_validation_error(exc, source=str(path), flag_style=False)
        raise ConfigError(message) from None


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
