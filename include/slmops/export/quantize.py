"""Weight quantization of an ONNX model file with onnxruntime.quantization.

Both functions read ``source`` (with its external data) and write ``target`` as
``target`` + ``target.data``; ``target`` may be ``source`` (rewritten in place).
Nodes named in ``exclude_nodes`` keep their float weights (LoRA MatMuls of a
multi-adapter model, whose weights are graph inputs anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
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
    block_size: int = INT4_BLOCK_SIZE,
    accuracy_level: int | None = INT4_CPU_ACCURACY_LEVEL,
    exclude_nodes: Iterable[str] = (),
) -> None:
    """Weight-only int4 (MatMulNBits, symmetric, per block) for every MatMul with a
    constant weight; activations stay float."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        load_model(source),
        bits=4,
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=accuracy_level,
        nodes_to_exclude=list(exclude_nodes),
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
    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        staged = Path(staging) / target.name
        quantize_dynamic(
            str(source),
            str(staged),
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(exclude_nodes),
            use_external_data_format=True,
        )
        save_model(load_model(staged), target)
