"""The data settings every stage shares: sources, splits and how rows become text.

Field names follow Microsoft Olive's CLI flags (``--data_files``, ``--text_template``...),
so a flag, a YAML key and a DAG Param are the same word.
"""

from __future__ import annotations

import re
import string

from pydantic import ConfigDict, Field, field_validator, model_validator

from slmops.config import SettingsModel, split_commas

# "train", "train[:4096]", "train[10%:20%]", "train[:100]+test[:10]" (datasets' syntax).
_SPLIT_PART = r"[A-Za-z_][\w.-]*(\[-?\d*%?:-?\d*%?\](\(\w+\))?)?"


SPLIT_SPEC = re.compile(rf"^{_SPLIT_PART}(\+{_SPLIT_PART})*$")


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def decode_escapes(text: str) -> str:
    r"""Turn the two-character ``\n``, ``\t`` and ``\\`` a shell or UI form passes into
    the characters they stand for; other backslashes are kept as typed."""
    return re.sub(r"\\([nt\\])", lambda match: _ESCAPES[match.group(1)], text)


def template_placeholders(template: str) -> list[str]:
    """Column names a ``{column}`` template refers to, in order of first use."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"malformed template ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or not name.isidentifier():
            raise ValueError(
                f"placeholder {{{name}}} is not a column name; placeholders look like {{phrase}}"
            )
        if spec or conversion:
            # A format spec can ask for a field billions of characters wide (per row), and
            # a nested one fails mid-run: only the column's text is ever substituted.
            written = (
                f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
            raise ValueError(
                f"placeholder {written} has a conversion or format spec; only plain "
                f"{{{name}}} placeholders are allowed (write {{{{ and }}}} for literal braces)"
            )
        if name not in names:
            names.append(name)
    return names


class DataConfig(SettingsModel):
    """Where the training data comes from, how it is split and how rows become text."""

    model_config = ConfigDict(extra="forbid")

    data_name: str | None = Field(
        None,
        description="Hugging Face hub dataset id (needs a network), or a local dataset folder",
    )
    data_files: list[str] | None = Field(
        None,
        description="local JSON, JSONL, CSV or Parquet files, folders or glob patterns "
        "(data/*.jsonl, data/**/*.csv), comma-separated",
    )
    data_roots: list[str] | None = Field(
        None,
        description="folders every data file read must lie in, symlinks resolved (a "
        "pipeline sets its data roots here); default: no limit",
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

    _split_commas = field_validator("data_files", "data_roots", mode="before")(split_commas)

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

    @field_validator("text_template")
    @classmethod
    def _check_placeholders(cls, value: str | None) -> str | None:
        """Placeholder errors at the field, so they name it."""
        if value is not None:
            template_placeholders(value)
        return value

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
