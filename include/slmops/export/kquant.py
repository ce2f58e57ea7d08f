"""onnxruntime's k-quant weight quantization, run over slices of rows that fit in cache.

The genai builder quantizes every weight with onnxruntime's numpy k-quant
(``neural_compressor.weight_only.quant_tensor_k_quant_cpu``), which works on a whole
tensor at once: for the 49,152 x 576 LM head each of its twenty search steps streams
several 113 MB temporaries through memory, and that one tensor took 18 of the bundled
model's 42 s of quantization. Each group of ``group_size`` weights is quantized on its own
(every operation in it is per row), so the same function over slices of rows gives the
same bytes, with its temporaries in the CPU's cache (``benchmarks/int4_export_time.py``).

``install`` swaps it in; only the builder's child process (``builder_child``) calls it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

# Rows of ``group_size`` weights per slice: 1024 x 32 float32 = 128 KB per temporary, a
# handful of which fit in a core's L2 cache. Measured on the LM head: 1024 rows 3.1x,
# 256 rows 2.9x (numpy's per-call cost starts to show), 4096 rows 3.0x.
ROWS_PER_SLICE = 1024

Quantize = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


def sliced(quantize: Quantize, rows_per_slice: int = ROWS_PER_SLICE) -> Quantize:
    """``quantize`` (onnxruntime's k-quant signature: data, num_bits, group_size ->
    q_weight, scale, zero_point, one row per group) applied slice by slice."""

    @functools.wraps(quantize)
    def quantize_in_slices(data, num_bits=4, group_size=32):
        groups = np.reshape(data, (-1, group_size))
        if groups.shape[0] <= rows_per_slice:
            return quantize(data, num_bits, group_size)
        parts = [
            quantize(groups[start : start + rows_per_slice], num_bits, group_size)
            for start in range(0, groups.shape[0], rows_per_slice)
        ]
        return tuple(np.concatenate(outputs) for outputs in zip(*parts, strict=True))

    quantize_in_slices.slmops_sliced = True
    return quantize_in_slices


def install() -> bool:
    """Make onnxruntime's CPU k-quant sliced in this process; True if it now is. (Its CUDA
    path, taken where cupy and a GPU are present, is left as it is.)"""
    from onnxruntime.quantization.neural_compressor import weight_only

    current = getattr(weight_only, "quant_tensor_k_quant_cpu", None)
    if current is None:  # another onnxruntime: its own quantization, untouched
        return False
    if not getattr(current, "slmops_sliced", False):
        weight_only.quant_tensor_k_quant_cpu = sliced(current)
    return True
