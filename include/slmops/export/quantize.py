"""Weight quantization of an ONNX model file with onnxruntime.quantization.

Both functions read ``source`` (with its external data) and write ``target`` as
``target`` + ``target.data``; ``target`` may be ``source`` (rewritten in place).
Nodes named in ``exclude_nodes`` keep their float weights (LoRA MatMuls of a
multi-adapter model, whose weights are graph inputs anyway).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

INT4_BLOCK_SIZE = 32
# accuracy_level 4: int8 activations in MatMulNBits, the fast CPU kernel (the builder's default).
INT4_CPU_ACCURACY_LEVEL = 4


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
    accuracy_level: int | None = INT4_CPU_ACCURACY_LEVEL,
    exclude_nodes: Iterable[str] = (),
) -> None:
    """Weight-only int4 (MatMulNBits, block 32, k-quant: the builder's cpu-int4 method)
    for every MatMul with a constant weight; activations stay float."""
    with _quiet_quantizer():
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            KQuantWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        quantizer = MatMulNBitsQuantizer(
            load_model(source),
            bits=4,
            block_size=INT4_BLOCK_SIZE,
            is_symmetric=True,
            accuracy_level=accuracy_level,
            nodes_to_exclude=list(exclude_nodes),
            algo_config=KQuantWeightOnlyQuantConfig(),
        )
        quantizer.process()
    save_model(quantizer.model.model, target)


def quantize_int8_dynamic(source: Path, target: Path, *, exclude_nodes: Iterable[str] = ()) -> None:
    """Dynamic int8: int8 MatMul weights, activations quantized per call at run time."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    # quantize_dynamic writes its own external data file next to the output; stage it
    # so an in-place rewrite never reads a half-written source.
    with tempfile.TemporaryDirectory(dir=target.parent) as staging, _quiet_quantizer():
        staged = Path(staging) / target.name
        quantize_dynamic(
            str(source),
            str(staged),
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
            per_channel=True,
            # 7-bit weights: on CPUs without VNNI (AVX2 only, as here) onnxruntime's u8 x s8
            # kernel saturates with 8-bit per-channel weights; measured on the tiny GPT-2 of
            # test_export_fallback, relative logits error 0.218 -> 0.061.
            reduce_range=True,
            nodes_to_exclude=list(exclude_nodes),
            use_external_data_format=True,
        )
        save_model(load_model(staged), target)


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
