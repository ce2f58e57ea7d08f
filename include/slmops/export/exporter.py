"""Export one Hugging Face model folder to ONNX for one target, into an empty folder.

onnxruntime-genai's model builder first (its graphs use the fused attention and int4
kernels, and the folder runs in onnxruntime-genai as is); for an architecture it does not
know, torch.onnx export + onnxruntime's optimizer and quantization, said in the log.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from slmops.errors import BuilderUnsupported
from slmops.export.genai_builder import BUILD_LOG, build_with_genai
from slmops.export.targets import Target
from slmops.progress import Log, no_log

GENAI_BUILDER = "onnxruntime-genai builder"
TORCH_ONNX = "torch.onnx"
_BUILDER_PRECISION = {"int4": "int4", "int8": "int8", "fp16": "fp16", "fp32": "fp32"}


def export_model(
    source_dir: Path,
    folder: Path,
    target: Target,
    *,
    use_ort_genai: bool = True,
    builder_options: dict[str, str] | None = None,
    log: Log = no_log,
) -> dict:
    """Write the model for ``target`` into ``folder``; returns what was done, for
    export.json: the exporter, whether it fell back and why, and the seconds taken."""
    started = time.monotonic()
    record: dict = {"exporter": GENAI_BUILDER, "fell_back": False, "fallback_reason": None}
    if use_ort_genai:
        try:
            options = {**dict(target.builder_options), **(builder_options or {})}
            _build(source_dir, folder, target, options, log)
        except BuilderUnsupported as exc:
            architecture = _architecture(source_dir)
            reason = (
                f"onnxruntime-genai's builder does not support {architecture}; exported with "
                "torch.onnx instead (runs in onnxruntime, not onnxruntime-genai)"
            )
            log(f"falling back: {reason} ({exc})")
            _empty(folder, keep=BUILD_LOG)
            record.update(fell_back=True, fallback_reason=reason)
            _torch_export(source_dir, folder, target, log)
            record["exporter"] = TORCH_ONNX
    else:
        _torch_export(source_dir, folder, target, log)
        record["exporter"] = TORCH_ONNX
    record["seconds"] = round(time.monotonic() - started, 2)
    return record


def _build(source_dir: Path, folder: Path, target: Target, options: dict, log: Log) -> None:
    build_with_genai(
        source_dir,
        folder,
        precision=_BUILDER_PRECISION[target.precision],
        execution_provider=target.builder_execution_provider,
        log_path=folder / BUILD_LOG,
        options=options,
        log=log,
    )


def _torch_export(source_dir: Path, folder: Path, target: Target, log: Log) -> None:
    from slmops.export.fallback import export_with_torch

    export_with_torch(source_dir, folder, precision=target.precision, log=log)


def _architecture(source_dir: Path) -> str:
    import json

    try:
        config = json.loads((Path(source_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "this model"
    names = config.get("architectures") or [config.get("model_type", "this model")]
    return ", ".join(names)


def _empty(folder: Path, *, keep: str) -> None:
    """Remove what a failed build left, keeping its log."""
    for entry in Path(folder).iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
