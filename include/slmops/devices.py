"""Where a run computes and in which dtypes, decided once from the config and the machine."""

from __future__ import annotations

import os
from dataclasses import dataclass

from slmops.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" or "cuda"
    weights_dtype: str  # dtype the base weights are loaded in
    mixed_precision: str | None  # "bf16", "fp16" or None (plain float32 math)
    compute_dtype: str  # QLoRA's 4-bit matmul dtype

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"


def local_rank() -> int | None:
    """This process's index on its host in a torchrun group (its GPU, one per process);
    None outside a group. torchrun sets LOCAL_RANK."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _gpu_half() -> str:
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def place(
    *,
    device: str = "auto",
    torch_dtype: str = "auto",
    mixed_precision: str = "auto",
    compute_dtype: str = "auto",
    full_weights: bool = False,
) -> Placement:
    """Resolve the ``auto`` settings; refuse combinations the device cannot run.

    ``full_weights``: every weight is trained (full fine-tuning), so weights stay float32
    under ``auto`` and speed comes from autocast instead.
    """
    gpu = cuda_available()
    if device == "gpu" and not gpu:
        import torch

        raise ConfigError(
            f"--device gpu: no CUDA device is visible (torch {torch.__version__}); use "
            "--device cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    on_gpu = gpu and device != "cpu"
    half = _gpu_half() if on_gpu else None
    if torch_dtype == "auto":
        torch_dtype = half if half and not full_weights else "float32"
    if mixed_precision == "auto":
        mixed_precision = {"bfloat16": "bf16", "float16": "fp16"}.get(half or "", "no")
    if compute_dtype == "auto":
        compute_dtype = half or "float32"
    if not on_gpu:
        for flag, value in (
            ("--torch_dtype", torch_dtype),
            ("--mixed_precision", mixed_precision),
            ("--bnb_4bit_compute_dtype", compute_dtype),
        ):
            if value in ("float16", "fp16"):
                raise ConfigError(
                    f"{flag} {value}: float16 needs a GPU; on CPU use float32 or bfloat16"
                )
    return Placement(
        device="cuda" if on_gpu else "cpu",
        weights_dtype=torch_dtype,
        mixed_precision=None if mixed_precision == "no" else mixed_precision,
        compute_dtype=compute_dtype,
    )
