"""Validation suites: shipped YAMLs and their checks."""

import pytest
from pydantic import ValidationError

from slmops.validation.suites import SUITES_DIR, SuiteConfig, load_suite


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


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(Exception, match="no such suite; shipped suites: default, instructions"):
        load_suite("nope")
