"""Child processes are bounded: a builder or benchmark that runs past its limit is stopped
with an error that says which limit to raise; the limits are environment settings."""

from __future__ import annotations

import time

import pytest

from slmops import timeouts
from slmops.errors import BenchmarkError, ConfigError, ExportError
from slmops.export.benchmark import Subject, measure
from slmops.export.genai_builder import build_with_genai


def test_the_builder_is_stopped_at_its_limit(monkeypatch, tiny_model_dir, tmp_path):
    # Importing the builder alone takes longer than this.
    monkeypatch.setenv("SLMOPS_BUILDER_TIMEOUT_S", "0.2")
    started = time.monotonic()
    with pytest.raises(
        ExportError, match=r"did not finish within 0.2 s .*SLMOPS_BUILDER_TIMEOUT_S"
    ):
        build_with_genai(
            tiny_model_dir,
            tmp_path / "out",
            precision="fp32",
            execution_provider="cpu",
            log_path=tmp_path / "build.log",
        )
    assert time.monotonic() - started < 30


def test_a_benchmark_is_stopped_at_its_limit(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("SLMOPS_BENCHMARK_TIMEOUT_S", "0.2")
    subject = Subject("pytorch", "torch", tiny_model_dir)
    with pytest.raises(BenchmarkError, match=r"pytorch .* did not finish within 0.2 s"):
        measure([subject], [[1, 2, 3]], 4)


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "inf", "soon"])
def test_a_limit_must_be_a_positive_number(monkeypatch, raw):
    monkeypatch.setenv("SLMOPS_BENCHMARK_TIMEOUT_S", raw)
    with pytest.raises(ConfigError, match=r"\$SLMOPS_BENCHMARK_TIMEOUT_S=.*positive number"):
        timeouts.BENCHMARK.seconds()


def test_limits_have_defaults(monkeypatch):
    monkeypatch.delenv("SLMOPS_BUILDER_TIMEOUT_S", raising=False)
    assert timeouts.BUILDER.seconds() == 4 * 3600
    monkeypatch.setenv("SLMOPS_BUILDER_TIMEOUT_S", "90")
    assert timeouts.BUILDER.seconds() == 90
