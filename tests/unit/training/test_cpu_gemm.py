"""cpu_gemm: frozen-weight float32 products on MKL or oneDNN, chosen by timing."""

from __future__ import annotations

import pytest
import torch

from slmops.errors import ConfigError
from slmops.training import cpu_gemm
from slmops.training.cpu_gemm import ENV, MKL, ONEDNN, Gemm

BACKENDS = [MKL, ONEDNN] if cpu_gemm.onednn_available() else [MKL]


@pytest.fixture(autouse=True)
def _fresh_timing():
    cpu_gemm._timed_choice.cache_clear()
    yield
    cpu_gemm._timed_choice.cache_clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_products_equal_torch_s_in_float32(backend):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(37, 48), torch.randn(80, 48), torch.randn(80)
    grad, earlier = torch.randn(37, 80), torch.randn(37, 48)
    gemm = Gemm(backend)

    assert torch.allclose(gemm.linear(x, weight, bias), x @ weight.t() + bias, rtol=1e-5, atol=1e-5)
    assert torch.allclose(gemm.linear(x, weight, None), x @ weight.t(), rtol=1e-5, atol=1e-5)
    assert torch.allclose(gemm.grad_input(grad, weight), grad @ weight, rtol=1e-5, atol=1e-5)
    expected = earlier + grad @ weight
    summed = gemm.grad_input(grad, weight, add_to=earlier.clone())
    assert torch.allclose(summed, expected, rtol=1e-5, atol=1e-5)


def test_the_environment_forces_a_library_and_a_wrong_value_is_named(monkeypatch):
    monkeypatch.setenv(ENV, "mkl")
    assert cpu_gemm.choose(64, 96) == Gemm(MKL)
    monkeypatch.setenv(ENV, "ONEDNN")
    assert cpu_gemm.choose(64, 96).backend == (ONEDNN if cpu_gemm.onednn_available() else MKL)
    monkeypatch.setenv(ENV, "openblas")
    with pytest.raises(ConfigError, match=r"SLMOPS_CPU_GEMM='openblas'.*mkl, onednn or auto"):
        cpu_gemm.choose(64, 96)


@pytest.mark.skipif(not cpu_gemm.onednn_available(), reason="this torch has no oneDNN")
def test_timing_keeps_onednn_only_when_clearly_faster_and_leaves_the_seeded_stream(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    torch.manual_seed(11)
    expected_next = torch.rand(3)
    torch.manual_seed(11)
    gemm = cpu_gemm.choose(96, 160)
    assert torch.equal(torch.rand(3), expected_next)  # the probe drew from its own generator
    assert gemm.onednn_over_mkl is not None and gemm.onednn_over_mkl > 0
    assert gemm.backend == (ONEDNN if gemm.onednn_over_mkl >= cpu_gemm.MIN_GAIN else MKL)
    assert cpu_gemm.choose(96, 160) is gemm  # timed once per shape and process


def test_without_onednn_mkl_is_used_untimed(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(cpu_gemm, "onednn_available", lambda: False)
    assert cpu_gemm.choose(32, 32) == Gemm(MKL)
    monkeypatch.setenv(ENV, "onednn")
    assert cpu_gemm.choose(32, 32) == Gemm(MKL)
