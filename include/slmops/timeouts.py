"""How long a child process may run before it is stopped.

A hung child (the ONNX builder, a benchmark, pip) would otherwise hold its worker slot
forever. The limits are deployment settings, read from the environment, never from a
trigger: a run's params cannot lift them.
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass

from slmops.errors import ConfigError


@dataclass(frozen=True)
class Limit:
    variable: str
    default_s: float
    what: str

    def seconds(self) -> float:
        raw = os.environ.get(self.variable)
        if raw is None or not raw.strip():
            return self.default_s
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"${self.variable}={raw!r}: give the {self.what} limit as a positive number "
                f"of seconds (default {self.default_s:.0f})"
            )
        return value

    def run(
        self, command: list[str], *, error: type[Exception], what: str, **kwargs
    ) -> subprocess.CompletedProcess:
        """``subprocess.run(command, **kwargs)`` stopped at this limit; past it, ``error``
        saying that ``what`` did not finish and which variable to raise."""
        limit = self.seconds()
        try:
            return subprocess.run(command, check=False, timeout=limit, **kwargs)
        except subprocess.TimeoutExpired:
            raise error(
                f"{what} did not finish within {limit:g} s and was stopped; if it needs "
                f"longer, set ${self.variable} (seconds) in the worker's environment"
            ) from None


BUILDER = Limit("SLMOPS_BUILDER_TIMEOUT_S", 4 * 3600, "ONNX builder")
BENCHMARK = Limit("SLMOPS_BENCHMARK_TIMEOUT_S", 1800, "benchmark of one model")
PIP = Limit("SLMOPS_PIP_TIMEOUT_S", 900, "pip install")
