"""Turn dataset rows into (prompt, completion) text pairs.

Three kinds, as in Olive: ``text_field`` (the text is already whole: no prompt, the loss
covers everything), ``text_template`` (``{column}`` placeholders; the completion starts
at the last placeholder, or at ``completion_field``), and ``use_chat_template`` (the
tokenizer's chat template renders a ``messages`` column or input/output columns as
user/assistant turns; the completion is the last assistant turn).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slmops.data.config import DataConfig, template_placeholders
from slmops.errors import FormatError


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class RowFormatter:
    """Renders rows of one dataset; built once from the config (and tokenizer, for chat)."""

    def __init__(self, config: DataConfig, tokenizer=None):
        self.config = config
        self.tokenizer = tokenizer
        if config.use_chat_template and tokenizer is None:
            raise FormatError("use_chat_template needs the model's tokenizer")
        if config.use_chat_template and not getattr(tokenizer, "chat_template", None):
            raise FormatError(
                "use_chat_template is set but the tokenizer has no chat template; "
                "use --text_template instead"
            )
        self._placeholders = template_placeholders(config.text_template or "")
        if config.text_template is not None:
            self._prompt_part, self._completion_part = _split_template(
                config.text_template, config.completion_field
            )

    def columns(self, available: Sequence[str]) -> list[str]:
        """The columns this format reads; checks that they exist among ``available``."""
        config = self.config
        if config.text_field is not None:
            needed = [config.text_field]
            what = "text_field"
        elif config.text_template is not None:
            needed = list(self._placeholders)
            what = "text_template placeholder"
        elif config.messages_field in available:
            return [config.messages_field]
        else:
            needed = [config.input_field, config.output_field]
            what = f"use_chat_template needs a {config.messages_field!r} column, or input"
        missing = [name for name in needed if name not in available]
        if missing:
            shown = ", ".join(sorted(available)) or "(none)"
            raise FormatError(
                f"{what} {', '.join('{' + name + '}' for name in missing)}: no such column "
                f"in the data; its columns are: {shown}"
            )
        return needed

    def format(self, row: Mapping[str, Any], *, strict: bool = True) -> Example:
        """One example; ``strict=False`` renders missing values as empty text (validation
        reports them) instead of raising."""
        config = self.config
        if config.text_field is not None:
            return Example("", _text(row, config.text_field, strict))
        if config.text_template is not None:
            values = {name: _text(row, name, strict) for name in self._placeholders}
            return Example(
                self._prompt_part.format_map(values), self._completion_part.format_map(values)
            )
        return self._format_chat(row, strict)

    def _format_chat(self, row: Mapping[str, Any], strict: bool) -> Example:
        config = self.config
        if config.messages_field in row:
            messages = _checked_messages(row.get(config.messages_field), config.messages_field)
        else:
            messages = [
                {"role": "user", "content": _text(row, config.input_field, strict)},
                {"role": "assistant", "content": _text(row, config.output_field, strict)},
            ]
        if config.system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": config.system_prompt}, *messages]
        render = self.tokenizer.apply_chat_template
        prompt = render(messages[:-1], tokenize=False, add_generation_prompt=True)
        whole = render(messages, tokenize=False, add_generation_prompt=False)
        if not whole.startswith(prompt):
            raise FormatError(
                "the chat template renders the conversation differently from its prompt, so "
                "the answer cannot be separated; use --text_template instead"
            )
        return Example(prompt, whole[len(prompt) :])


def _split_template(template: str, completion_field: str | None) -> tuple[str, str]:
    """Cut the template where the completion placeholder begins."""
    names = template_placeholders(template)
    target = completion_field or names[-1]
    offset = 0
    for literal, name, spec, conversion in string.Formatter().parse(template):
        # Re-escape literal braces so each half stays a valid format string.
        offset += len(literal.replace("{", "{{").replace("}", "}}"))
        if name == target:
            return template[:offset], template[offset:]
        if name is not None:
            offset += len(_field_source(name, spec, conversion))
    raise AssertionError("placeholder vanished")  # names came from the same parse


def _field_source(name: str, spec: str | None, conversion: str | None) -> str:
    conversion_part = f"!{conversion}" if conversion else ""
    spec_part = f":{spec}" if spec else ""
    return "{" + name + conversion_part + spec_part + "}"


def _text(row: Mapping[str, Any], name: str, strict: bool) -> str:
    value = row.get(name)
    if is_missing(value):
        if strict:
            raise FormatError(f"column {name!r} has no value; fill it in or drop the row")
        return ""
    return value if isinstance(value, str) else str(value)


def _checked_messages(messages: Any, field: str) -> list[dict[str, str]]:
    if hasattr(messages, "tolist"):  # numpy arrays out of Parquet / pandas
        messages = messages.tolist()
    if not isinstance(messages, list) or not messages:
        raise FormatError(f"column {field!r} must hold a non-empty list of messages")
    checked = []
    for message in messages:
        if not isinstance(message, Mapping) or not {"role", "content"} <= set(message):
            raise FormatError(f"each message in {field!r} needs a 'role' and a 'content'")
        checked.append({"role": str(message["role"]), "content": str(message["content"])})
    if checked[-1]["role"] != "assistant":
        raise FormatError(
            f"the last message in {field!r} must be the assistant's answer, "
            f"not {checked[-1]['role']!r}"
        )
    return checked
