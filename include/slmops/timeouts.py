"""How long a child process may run before it is stopped.

A hung child (the ONNX builder, a benchmark, pip) would otherwise hold its worker slot
forever. The limits are deployment settings, read from the environment, never from a
trigger: a run's params cannot lift them.
"""

from __future__ import annotations

import math
import os
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

    def exceeded(self, seconds: float) -> str:
        """The end of an error message: what was stopped and how to allow longer."""
        return (
            f"did not finish within {seconds:g} s and was stopped; if it needs longer, set "
            f"${self.variable} (seconds) in the worker's environment"
        )


BUILDER = Limit("SLMOPS_BUILDER_TIMEOUT_S", 4 * 3600, "ONNX builder")
BENCHMARK = Limit("SLMOPS_BENCHMARK_TIMEOUT_S", 1800, "benchmark of one model")
PIP = Limit("SLMOPS_PIP_TIMEOUT_S", 900, "pip install")
