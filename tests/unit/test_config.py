"""Config primitives: YAML settings files and their errors."""

import pytest

from slmops.config import load_yaml_model, switched_off
from slmops.errors import ConfigError
from slmops.validation.suites import SuiteConfig


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


@pytest.mark.parametrize(
    ("value", "off"),
    [("0", True), (" Off ", True), ("no", True), ("1", False), ("yes", False), ("", False)],
)
def test_an_environment_switch_is_on_unless_turned_off(monkeypatch, value, off):
    monkeypatch.delenv("SLMOPS_TEST_SWITCH", raising=False)
    assert switched_off("SLMOPS_TEST_SWITCH") is False
    monkeypatch.setenv("SLMOPS_TEST_SWITCH", value)
    assert switched_off("SLMOPS_TEST_SWITCH") is off
