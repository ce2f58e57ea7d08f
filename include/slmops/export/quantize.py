"""Weight quantization of an ONNX model file with onnxruntime.quantization.

Both functions (weight-only int4 and int8) read ``source`` (with its external data) and
write ``target`` as ``target`` + ``target.data``; ``target`` may be ``source`` (rewritten
in place).
Nodes named in ``exclude_nodes`` keep their float weights (LoRA MatMuls of a
multi-adapter model, whose weights are graph inputs anyway).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

BLOCK_SIZE = 32  # of the int4 and the int8 weights
# accuracy_level 4: int8 activations in MatMulNBits, the fast CPU kernel (the builder's default).
CPU_ACCURACY_LEVEL = 4


def save_model(model, path: Path) -> None:
    """Save an onnx ModelProto with its weights in one external ``<name>.data`` file."""
    import onnx

    path = Path(path)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )


def load_model(path: Path):
    import onnx

    return onnx.load_model(str(path), load_external_data=True)


def quantize_int4(
    source: Path,
    target: Path,
    *,
    accuracy_level: int | None = CPU_ACCURACY_LEVEL,
    exclude_nodes: Iterable[str] = (),
) -> None:
    """Weight-only int4 (MatMulNBits, block 32, k-quant: the builder's cpu-int4 method)
    for every MatMul with a constant weight; activations stay float."""
    with _quiet_quantizer():
        from onnxruntime.quantization.matmul_nbits_quantizer import KQuantWeightOnlyQuantConfig

        algo_config = KQuantWeightOnlyQuantConfig()
    _weight_only(source, target, 4, accuracy_level, exclude_nodes, algo_config)


def quantize_int8(source: Path, target: Path, *, exclude_nodes: Iterable[str] = ()) -> None:
    """Weight-only int8 (MatMulNBits, 8 bits, block 32: the builder's int8, the cpu-int8
    target) for every MatMul with a constant weight; activations stay float. Not dynamic
    int8 (activations quantized per call), which on the demo model answered unlike PyTorch
    on 93 of 630 rows where this answers unlike it on 1 (benchmarks/RESULTS.md)."""
    _weight_only(source, target, 8, CPU_ACCURACY_LEVEL, exclude_nodes, algo_config=None)


def _weight_only(source, target, bits, accuracy_level, exclude_nodes, algo_config) -> None:
    with _quiet_quantizer():
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            load_model(source),
            bits=bits,
            block_size=BLOCK_SIZE,
            is_symmetric=True,
            accuracy_level=accuracy_level,
            nodes_to_exclude=list(exclude_nodes),
            algo_config=algo_config,  # None: round to nearest
        )
        quantizer.process()
    save_model(quantizer.model.model, target)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The int4 quantizer logs a line per node at INFO, its module calls
    ``logging.basicConfig(level=INFO)`` when imported, k-quant warns about blocks of zeros
    and draws a progress bar, and the int8 one advises pre-processing on the root logger
    (the builder's graphs are already optimized); keep all of it out of the caller's
    output."""
    import numpy as np

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in chatty]
    for logger in chatty:
        logger.setLevel(logging.WARNING)
    root.setLevel(logging.ERROR)
    try:
        # k-quant divides by zero on all-zero blocks (it then keeps the plain scale), and
        # prints a progress bar to stdout, where the CLI writes its JSON result.
        with (
            np.errstate(divide="ignore", invalid="ignore"),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for logger, previous in zip(chatty, levels, strict=True):
            logger.setLevel(previous)


_CHATTY_LOGGERS = (
    "onnxruntime.quantization.matmul_nbits_quantizer",
    "neural_compressor",
)
