"""Deployment targets: (device, execution provider, precision) with what each is for.

A target names how the ONNX model is built and where it runs. ``resolve_target`` turns the
Olive-style flags (``--device``, ``--provider``, ``--precision``) or a ``--target`` name into
one of these, refusing combinations that onnxruntime cannot run (int8 on CUDA, fp16 on CPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from slmops.errors import ConfigError

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
PROVIDERS = {"cpu": CPU_PROVIDER, "gpu": CUDA_PROVIDER}
PRECISIONS = ("int4", "int8", "fp16", "fp32")


@dataclass(frozen=True)
class Target:
    name: str
    device: str  # "cpu" | "gpu"
    provider: str  # onnxruntime execution provider
    precision: str  # "int4" | "int8" | "fp16" | "fp32"
    purpose: str
    # The builder's --extra_options for this target (a user's --builder_options win).
    builder_options: tuple[tuple[str, str], ...] = ()

    @property
    def builder_execution_provider(self) -> str:
        """The ``-e`` value of onnxruntime-genai's model builder."""
        return "cuda" if self.device == "gpu" else "cpu"

    @property
    def genai_provider(self) -> str | None:
        """The provider to append in ``og.Config`` (None: genai's default, the CPU)."""
        return "cuda" if self.device == "gpu" else None

    def as_dict(self) -> dict:
        return asdict(self)


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "cpu-int4",
            "cpu",
            CPU_PROVIDER,
            "int4",
            "the default: weight-only int4 (MatMulNBits, block 32, k-quant; the LM head int8) "
            "for laptops and CPU servers; the smallest and fastest CPU model",
            # k_quant instead of plain round-to-nearest: on the demo model RTN int4 lost 8
            # accuracy points, k_quant 1.6, at the same size and speed. The LM head in int8
            # (last_matmul:int8; benchmarks/int4_options.py on the demo's 200-step model,
            # PyTorch 0.9841 on 63 rows): 0 points lost instead of 1.6, at 0.92x the decode
            # speed and 98.5 MB instead of 84.5. Also measured there: accuracy_level 3
            # (bf16) or 2: same accuracy, 0.62x / 0.60x; block_size 16: 3.2 points, 0.68x;
            # an untied float embedding: same accuracy as tied, 2.1x the size.
            builder_options=(
                ("algo_config", "k_quant"),
                ("matmul_mixed_precision", "last_matmul:int8"),
            ),
        ),
        Target(
            "cpu-int8",
            "cpu",
            CPU_PROVIDER,
            "int8",
            "weight-only int8 (MatMulNBits, 8-bit weights, block 32); closer to fp32 than "
            "int4 where int4 loses accuracy, about three times its size",
            # Weight-only, not dynamic int8 (activations quantized per call, MatMulInteger),
            # which this target was before: on the demo model, 630 rows, dynamic int8 gave
            # 93 answers unlike PyTorch's (0.8476 against 0.9921), weight-only int8 1
            # (0.9905) and int4 14 (benchmarks/int4_options.py, RESULTS.md).
        ),
        Target(
            "cpu-fp32",
            "cpu",
            CPU_PROVIDER,
            "fp32",
            "full precision on CPU: the parity reference for the quantized targets",
        ),
        Target(
            "gpu-fp16",
            "gpu",
            CUDA_PROVIDER,
            "fp16",
            "NVIDIA GPUs with onnxruntime-genai-cuda: fp16 weights and activations",
        ),
        Target(
            "gpu-int4",
            "gpu",
            CUDA_PROVIDER,
            "int4",
            "NVIDIA GPUs: int4 weights with fp16 activations, for small GPUs or many models",
        ),
    )
}
DEFAULT_TARGET = "cpu-int4"

# What cannot run, and what to use instead.
_UNSUPPORTED = {
    ("gpu", "int8"): "slmops has no GPU int8 target (none was verified on CUDA); use "
    "--precision int4 or fp16 on the GPU, or --device cpu for int8",
    ("cpu", "fp16"): "fp16 runs slower than fp32 on CPUs (no fp16 kernels); use "
    "--precision int4, int8 or fp32 on the CPU, or --device gpu for fp16",
}


def target_names() -> list[str]:
    return list(TARGETS)


def resolve_target(
    target: str | None = None,
    *,
    device: str | None = None,
    provider: str | None = None,
    precision: str | None = None,
) -> Target:
    """The target named by ``target``, or built from device / provider / precision
    (missing parts default to the CPU and int4). Flags that contradict the named target
    are an error rather than silently ignored."""
    if target is not None:
        if target not in TARGETS:
            raise ConfigError(
                f"--target: unknown target {target!r}; choose one of {', '.join(TARGETS)} "
                "(`slmops targets` lists what each is for)"
            )
        chosen = TARGETS[target]
        _check_agrees(chosen, device=device, provider=provider, precision=precision)
        return chosen
    device = device or _device_of(provider) or "cpu"
    if device not in PROVIDERS:
        raise ConfigError(f"--device: expected cpu or gpu, got {device!r}")
    if provider is not None and provider != PROVIDERS[device]:
        raise ConfigError(
            f"--provider {provider} does not run on --device {device}; use "
            f"{PROVIDERS[device]} (or leave --provider out)"
        )
    precision = precision or "int4"
    if precision not in PRECISIONS:
        raise ConfigError(
            f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if (device, precision) in _UNSUPPORTED:
        raise ConfigError(
            f"--precision {precision} is not supported on --device {device}: "
            f"{_UNSUPPORTED[device, precision]}"
        )
    return TARGETS[f"{device}-{precision}"]


def _device_of(provider: str | None) -> str | None:
    if provider is None:
        return None
    for device, name in PROVIDERS.items():
        if provider == name:
            return device
    raise ConfigError(
        f"--provider: unknown execution provider {provider!r}; use {CPU_PROVIDER} or "
        f"{CUDA_PROVIDER}"
    )


def _check_agrees(target: Target, **flags: str | None) -> None:
    for flag, value in flags.items():
        if value is not None and value != getattr(target, flag):
            raise ConfigError(
                f"--{flag} {value} contradicts --target {target.name} "
                f"({flag} {getattr(target, flag)}); give one or the other"
            )
