"""Typed settings: choices, ranges, split syntax, template escapes, shipped suites."""

import pytest
from pydantic import ValidationError

from slmops.config import load_yaml_model
from slmops.data.config import DataConfig, decode_escapes, template_placeholders
from slmops.errors import ConfigError
from slmops.validation.suites import SUITES_DIR, SuiteConfig, load_suite

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


def test_suite_labels_need_a_label_column():
    with pytest.raises(ValidationError, match="labels are given but label_column is not"):
        SuiteConfig(name="s", labels=["a"])
    with pytest.raises(ValidationError, match="min_chars 5 is above max_chars 2"):
        SuiteConfig(name="s", text_length={"min_chars": 5, "max_chars": 2})


def test_every_shipped_suite_is_valid():
    names = sorted(path.stem for path in SUITES_DIR.glob("*.yaml"))
    assert {"default", "phrase_tones", "instructions"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert suite.name == name and suite.description


def test_phrase_tones_suite_declares_the_six_tones():
    suite = load_suite("phrase_tones")
    assert suite.label_column == "tone"
    assert len(suite.labels) == 6


def test_yaml_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\nmin_rows: 0\ntext_length: {max_chars: x}\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_model(path, SuiteConfig)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "min_rows: Input should be greater than or equal to 1" in message
    assert "text_length.max_chars: Input should be a valid integer" in message


def test_yaml_that_is_not_a_mapping_or_not_yaml(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml_model(path, SuiteConfig)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_model(path, SuiteConfig)


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(Exception, match="no such suite; shipped suites: default, instructions"):
        load_suite("nope")
