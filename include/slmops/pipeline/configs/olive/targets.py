"""An Olive config's export passes: each ModelBuilder pass's precision (and a CUDA
provider under ``systems``) becomes one of slmops' targets; other passes are noted as
ignored, since slmops exports each target itself."""

from __future__ import annotations

import json
from typing import Any

from slmops.export.targets import TARGETS
from slmops.pipeline.configs.olive._common import Reader, settings
from slmops.pipeline.configs.olive.passes import METHODS


def read_targets(reader: Reader, config: dict) -> None:
    """Read the non-fine-tuning passes into ``reader``: ModelBuilder ones as targets."""
    # A CUDA provider anywhere under systems means the builder ran for a GPU.
    gpu = "cuda" in json.dumps(config.get("systems") or {}).lower()
    targets = []
    for name, spec in (config.get("passes") or {}).items():
        path, kind = f"passes.{name}", str(spec.get("type"))
        if kind.lower() in METHODS:
            continue
        precision = dict((k, v) for k, v, _ in settings(spec, path)).get("precision")
        target = _builder_target(precision, gpu) if kind == "ModelBuilder" else None
        if target:
            targets.append(target)
            reader.notes.append(f"{path} ({kind}, {precision}) -> targets += {target!r}")
        else:
            reader.ignore(f"{path} ({kind})", "slmops exports each of targets itself")
    if targets:
        reader.set("targets", list(dict.fromkeys(targets)), "passes (ModelBuilder)")


def _builder_target(precision: Any, gpu: bool) -> str | None:
    device = "gpu" if gpu or precision == "fp16" else "cpu"
    target = f"{device}-{precision}"
    return target if target in TARGETS else None
