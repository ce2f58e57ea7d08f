"""float32 products with a frozen weight on CPU, on the faster of torch's two GEMM libraries.

torch multiplies float32 matrices on CPU with MKL. On AMD processors MKL runs its Zen code
path (AVX2) even where the processor has AVX-512, while oneDNN, which every CPU build of
torch also carries, uses AVX-512 wherever the processor has it: on the AMD EPYC (Zen 4)
these machines run, a 1544x576x1536 product of the bundled model's MLP took 130 GFLOP/s
with MKL and 186 with oneDNN. On Intel processors MKL is usually as fast or faster. Both
multiply and sum in float32; the results differ only in summation order (about 1e-7
relative).

``choose(in_features, out_features)`` times both on one projection shape of the model, once
per process and shape, and keeps oneDNN only when it is clearly faster (by MIN_GAIN).
SLMOPS_CPU_GEMM=mkl or =onednn skips the timing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

from slmops.errors import ConfigError

ENV = "SLMOPS_CPU_GEMM"
MKL, ONEDNN = "mkl", "onednn"
MIN_GAIN = 1.05  # oneDNN must be this much faster, so timing noise does not flip the choice
_PROBE_TOKENS = 1024  # a batch of 8 rows of 128 tokens
_PROBE_ROUNDS = 5


@dataclass(frozen=True)
class Gemm:
    """``linear`` (x W^T + b) and ``grad_input`` (dy W [+ add_to]) on one backend; the
    measured speed of oneDNN over MKL (None when not timed)."""

    backend: str
    onednn_over_mkl: float | None = None

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        if self.backend == ONEDNN:
            return _onednn_linear(x, weight, bias)
        return torch.nn.functional.linear(x, weight, bias)

    def grad_input(
        self, grad: torch.Tensor, weight: torch.Tensor, add_to: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``grad @ weight``, added in place to ``add_to`` when given (and returned)."""
        if self.backend == ONEDNN:
            product = _onednn_linear(grad, weight.t(), None)
            return product if add_to is None else product.add_(add_to)
        if add_to is None:
            return grad @ weight
        return add_to.addmm_(grad, weight)


def _onednn_linear(x, weight, bias):
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def choose(in_features: int, out_features: int) -> Gemm:
    """The backend for float32 products with a frozen ``out_features x in_features`` weight:
    SLMOPS_CPU_GEMM's, else the faster here by timing."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in (MKL, ONEDNN):
        return Gemm(forced if forced == MKL or onednn_available() else MKL)
    if forced not in ("", "auto"):
        raise ConfigError(
            f"environment variable {ENV}={forced!r} is not a GEMM library: set it to mkl, "
            "onednn or auto (the default: the faster here, by timing), or unset it"
        )
    return _timed_choice(in_features, out_features)


@lru_cache(maxsize=8)
def _timed_choice(in_features: int, out_features: int) -> Gemm:
    if not onednn_available():
        return Gemm(MKL)
    generator = torch.Generator().manual_seed(0)  # leaves the training's random stream alone
    x = torch.randn(_PROBE_TOKENS, in_features, generator=generator)
    weight = torch.randn(out_features, in_features, generator=generator)
    grad = torch.randn(_PROBE_TOKENS, out_features, generator=generator)
    try:
        mkl = _best_seconds(Gemm(MKL), x, weight, grad)
        onednn = _best_seconds(Gemm(ONEDNN), x, weight, grad)
    except RuntimeError:  # a torch whose oneDNN op refuses these arguments
        return Gemm(MKL)
    gain = mkl / onednn
    return Gemm(ONEDNN if gain >= MIN_GAIN else MKL, round(gain, 2))


def _best_seconds(gemm: Gemm, x, weight, grad) -> float:
    """The best of a few forward + input-gradient products, after one of each to warm up
    (oneDNN creates its kernels on a shape's first call)."""
    gemm.linear(x, weight, None)
    gemm.grad_input(grad, weight)
    best = float("inf")
    for _ in range(_PROBE_ROUNDS):
        started = time.perf_counter()
        gemm.linear(x, weight, None)
        gemm.grad_input(grad, weight)
        best = min(best, time.perf_counter() - started)
    return best
