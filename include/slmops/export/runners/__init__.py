"""Runners of exported models, one module each behind one protocol (``base.Runner``):
onnxruntime-genai (``genai``), plain onnxruntime for the torch.onnx fallback (``ort``),
and the PyTorch reference (``pytorch``). ``open_exported`` picks one for a folder.
"""

from __future__ import annotations

from pathlib import Path

from slmops.export.runners.base import (
    Runner,
    cpu_threads,
    encode_prompts,
    greedy_answers,
    is_exported_folder,
    is_genai_folder,
)

__all__ = [
    "Runner",
    "cpu_threads",
    "encode_prompts",
    "greedy_answers",
    "is_exported_folder",
    "is_genai_folder",
    "open_exported",
]


def open_exported(folder: Path, *, device: str = "cpu") -> Runner:
    """The runner for an exported folder: genai's when it has genai_config.json, else
    the torch.onnx fallback's onnxruntime session."""
    folder = Path(folder)
    if is_genai_folder(folder):
        from slmops.export.runners.genai import GenaiRunner

        return GenaiRunner(folder, device=device)
    from slmops.export.runners.ort import OrtCausalLM

    providers = ["CUDAExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]
    return OrtCausalLM.load(folder, providers=providers)
