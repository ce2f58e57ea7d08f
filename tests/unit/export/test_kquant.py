"""The builder's k-quant run in slices of rows: the same bytes as onnxruntime's own, on
arrays and on a whole int4 export."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from onnxruntime.quantization.neural_compressor import weight_only

from slmops.export import kquant
from slmops.export.genai_builder import BUILDER_MODULE, SHIPPED_BUILDER_MODULE, builder_command
from slmops.export.targets import TARGETS

ORIGINAL = weight_only.quant_tensor_k_quant_cpu


def _weights(rows: int, columns: int) -> np.ndarray:
    data = np.random.default_rng(7).standard_normal((rows, columns)).astype(np.float32) * 0.02
    data[0, :32] = 0.25  # a constant group (rmin == rmax): the division-by-zero branch
    data[3, 32:64] = 0.0
    data[5, :] *= 40  # an outlier row
    return data


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 16])
def test_slices_give_the_same_bytes_as_the_whole_tensor(bits, group_size):
    data = _weights(75, 96)  # 450 groups of 16, 225 of 32: slices of 7 leave a remainder
    with np.errstate(divide="ignore", invalid="ignore"):  # the constant group, in both
        expected = ORIGINAL(data, bits, group_size)
        got = kquant.sliced(ORIGINAL, rows_per_slice=7)(data, bits, group_size)
    for name, want, have in zip(("q_weight", "scale", "zero_point"), expected, got, strict=True):
        assert have.dtype == want.dtype and have.shape == want.shape, name
        assert np.array_equal(have, want), name


def test_install_replaces_the_cpu_kquant_once(monkeypatch):
    monkeypatch.setattr(weight_only, "quant_tensor_k_quant_cpu", ORIGINAL)
    assert kquant.install()
    installed = weight_only.quant_tensor_k_quant_cpu
    assert installed is not ORIGINAL and installed.slmops_sliced
    assert kquant.install() and weight_only.quant_tensor_k_quant_cpu is installed  # not twice


def test_the_builder_child_writes_the_builders_files(tmp_path):
    """cpu-int4 (k-quant, int8 LM head) of a tiny model whose MLP weights and LM head
    span several slices: the child's model.onnx and weights are byte for byte the
    builder's own."""
    from slmops.testing import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model", intermediate_size=1280)
    outputs = {}
    for module in (SHIPPED_BUILDER_MODULE, BUILDER_MODULE):
        out = tmp_path / module
        command = builder_command(
            model, out, precision="int4", execution_provider="cpu",
            cache_dir=tmp_path / f"cache-{module}",
            options=dict(TARGETS["cpu-int4"].builder_options), module=module,
        )  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        outputs[module] = out
    original, child = outputs.values()
    for name in ("model.onnx", "model.onnx.data"):
        if (original / name).exists() or (child / name).exists():
            assert (child / name).read_bytes() == (original / name).read_bytes(), name
