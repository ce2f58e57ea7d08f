"""What the torch.onnx fallback does to its traced graph: onnxruntime's transformer
fusions (``optimize_graph``), the check of each candidate graph against PyTorch
(``first_matching``; ``log_drift`` for the converted one) and the conversion to the
requested precision (``convert_precision``)."""

from __future__ import annotations

import inspect
from pathlib import Path

from slmops.errors import ExportError
from slmops.export.runners.ort import OrtCausalLM
from slmops.progress import Log

# fp32 ONNX vs PyTorch, max |logits diff| relative to max(1, |logits|): real bugs (mask,
# positions, cache) show up as differences of order 1.
FP32_TOLERANCE = 1e-3


def optimize_graph(source: Path, config, target: Path, log: Log) -> Path | None:
    """onnxruntime's transformer fusions (LayerNorm, Gelu, SkipLayerNorm...). GPT-2 gets
    the full gpt2 set; other architectures skip the attention/rotary fusions, whose
    patterns are GPT-2/Llama specific. None when the optimizer fails."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("gpt2")
    if config.model_type != "gpt2":
        options.enable_attention = False
        options.enable_rotary_embeddings = False
    try:
        optimizer = optimize_model(
            str(source),
            model_type="gpt2",
            num_heads=getattr(config, "num_attention_heads", 0) or 0,
            hidden_size=getattr(config, "hidden_size", 0) or 0,
            optimization_options=options,
        )
        optimizer.save_model_to_file(str(target), use_external_data_format=True)
    except Exception as exc:
        log(f"onnxruntime optimizer skipped ({type(exc).__name__}: {exc}); keeping the plain graph")
        return None
    fused = {op: n for op, n in optimizer.get_fused_operator_statistics().items() if n}
    log(f"onnxruntime optimizer fused: {fused or 'nothing'}")
    return target


def first_matching(model, spec: dict, candidates: list[Path], log: Log) -> Path:
    """The first graph whose fp32 logits match PyTorch (prefill with left padding, then a
    cached decode step)."""
    for path in candidates:
        diff, scale = _max_logits_diff(model, _runner(path, spec), with_scale=True)
        log(f"{path.stem} graph vs PyTorch: max |logits diff| {diff:.3g} (|logits| <= {scale:.3g})")
        if diff <= FP32_TOLERANCE * max(1.0, scale):
            return path
    raise ExportError(
        f"the ONNX export of {model.name_or_path} ({model.config.model_type}) does not match "
        f"PyTorch (max |logits diff| {diff:.3g}); this architecture needs onnxruntime-genai's "
        "builder or optimum-onnx"
    )


def log_drift(model, path: Path, spec: dict, log: Log) -> None:
    """How far the converted model moved from PyTorch fp32 (informative, not a gate)."""
    try:
        drift = _max_logits_diff(model, _runner(path, spec))
    except Exception as exc:  # fp16 targets GPUs; a CPU build may lack some fp16 kernels
        log(f"{spec['precision']} model not checked on CPU ({type(exc).__name__}: {exc})")
        return
    log(f"{spec['precision']} vs PyTorch fp32: max |logits diff| {drift:.3g}")


def _runner(path: Path, spec: dict) -> OrtCausalLM:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return OrtCausalLM(session, spec)


def _max_logits_diff(model, runner: OrtCausalLM, *, with_scale: bool = False):
    """Max |ONNX - PyTorch| logits over real (non-padded) positions of a left-padded batch,
    plus one cached decode step."""
    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :4] = 0
    logits, present = runner.step(input_ids.numpy(), attention_mask.numpy())
    expected = _torch_logits(model, input_ids, attention_mask)
    real = attention_mask.numpy().astype(bool)
    diff = float(np.abs(logits - expected)[real].max())
    next_ids = torch.from_numpy(logits[:, -1].argmax(-1))[:, None]
    input_ids = torch.cat([input_ids, next_ids], 1)
    attention_mask = torch.cat([attention_mask, torch.ones_like(next_ids)], 1)
    logits, _ = runner.step(next_ids.numpy(), attention_mask.numpy(), present)
    expected_step = _torch_logits(model, input_ids, attention_mask)[:, -1]
    diff = max(diff, float(np.abs(logits[:, -1] - expected_step).max()))
    scale = float(np.abs(expected[real]).max())
    return (diff, scale) if with_scale else diff


def _torch_logits(model, input_ids, attention_mask):
    """PyTorch logits with ``generate``'s position ids (real tokens counted only)."""
    import torch

    extra = {}
    if "position_ids" in inspect.signature(model.forward).parameters:
        extra["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=attention_mask, **extra)
    return out.logits.float().numpy()


def convert_precision(source: Path, target: Path, precision: str, log: Log) -> None:
    from slmops.export import quantize

    if precision in ("int8", "int4"):
        log(f"quantizing MatMul weights to {precision} (block {quantize.BLOCK_SIZE})")
        weight_only = quantize.quantize_int8 if precision == "int8" else quantize.quantize_int4
        weight_only(source, target)
    elif precision == "fp16":
        from onnxruntime.transformers.onnx_model import OnnxModel

        log("converting weights to fp16 (inputs/outputs stay fp32)")
        model = OnnxModel(quantize.load_model(source))
        # Symbolic shape inference inside knows the fused contrib ops (SkipLayerNorm...).
        model.convert_float_to_float16(keep_io_types=True)
        model.topological_sort()  # the input Casts are appended after their consumers
        quantize.save_model(model.model, target)
    else:
        quantize.save_model(quantize.load_model(source), target)
