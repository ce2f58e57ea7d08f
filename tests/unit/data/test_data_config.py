"""DataConfig: sources, splits, formats and their errors."""

import pytest
from pydantic import ValidationError

from slmops.data.config import DataConfig, decode_escapes, template_placeholders

BASE = {"data_files": "a.jsonl", "text_field": "text"}


def test_data_files_split_on_commas():
    config = DataConfig(data_files=" a.jsonl, b.csv ,,", text_field="text")
    assert config.data_files == ["a.jsonl", "b.csv"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"text_field": "t"}, "exactly one of data_name"),
        ({"data_name": "x", "data_files": "a", "text_field": "t"}, "exactly one of data_name"),
        ({"data_files": "a"}, "exactly one of text_field, text_template or use_chat_template"),
        (
            {**BASE, "use_chat_template": True},
            r"\(got text_field, use_chat_template\)",
        ),
        ({**BASE, "eval_fraction": 0.9}, "less than or equal to 0.5"),
        ({**BASE, "max_samples": 0}, "greater than or equal to 1"),
        ({**BASE, "train_split": "train[:4096"}, "is not a split"),
        ({**BASE, "eval_split": "train[a:b]"}, "is not a split"),
        ({"data_files": "a", "text_template": "no placeholder"}, "has no {column} placeholder"),
        ({"data_files": "a", "text_template": "{a} {b}", "completion_field": "c"}, "not a placeh"),
        ({**BASE, "completion_field": "x"}, "only applies to text_template"),
        ({"data_files": "a", "text_template": "{a.b}"}, "not a column name"),
        ({"data_files": "a", "text_template": "{a"}, "malformed template"),
        # A field two billion characters wide would be built for every row.
        (
            {"data_files": "a", "text_template": "{a:>2000000000}"},
            r"placeholder \{a:>2000000000\} has a conversion or format spec; only plain \{a\}",
        ),
        ({"data_files": "a", "text_template": "{a:{b}}"}, r"\{a:\{b\}\} has a conversion or"),
        ({"data_files": "a", "text_template": "x {a!r}"}, r"\{a!r\} has a conversion or"),
        ({**BASE, "epochs": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_data_settings(values, message):
    with pytest.raises(ValidationError, match=message):
        DataConfig(**values)


@pytest.mark.parametrize(
    "spec", ["train", "train[:4096]", "train[4096:4224]", "train[:90%]", "train[-10%:]", "a+b[:5]"]
)
def test_split_specs_in_datasets_syntax_are_accepted(spec):
    assert DataConfig(**BASE, train_split=spec).train_split == spec


def test_shell_escapes_in_templates_become_characters():
    config = DataConfig(data_files="a", text_template=r"User: {input}\nAssistant: {output}")
    assert config.text_template == "User: {input}\nAssistant: {output}"
    assert decode_escapes(r"a\tb\\nc\q") == "a\tb\\nc\\q"


def test_template_placeholders_in_order_without_repeats():
    assert template_placeholders("{b} {a} {b} {{literal}}") == ["b", "a"]


def test_a_placeholder_error_names_the_field():
    with pytest.raises(ValidationError) as raised:
        DataConfig(data_files="a", text_template="{a:>9}")
    assert raised.value.errors()[0]["loc"] == ("text_template",)
