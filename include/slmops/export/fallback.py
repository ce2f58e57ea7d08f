"""torch.onnx export for causal LMs that onnxruntime-genai's model builder does not know.

The model is traced (TorchScript exporter) through a thin wrapper that takes flat tensors:
``input_ids``, ``attention_mask`` (past + new tokens) and ``past_key_values.N.key/value``,
and returns ``logits`` and ``present.N.key/value``. The wrapper builds the 4D causal +
padding mask and the position ids from ``attention_mask`` with tensor ops only, so
nothing about batch size, prompt length, padding or cache length is frozen into the graph
(transformers' own mask code branches on Python ints, which a trace turns into constants).

The graph then goes through onnxruntime's transformer optimizer, is checked against
PyTorch (fp32 must match; the unoptimized graph is kept when the optimized one does not),
and is converted to the requested precision (those steps are ``fallback_graph``'s).
``slmops_onnx.json`` describes the result for ``slmops.export.runners.ort.OrtCausalLM``.
"""

from __future__ import annotations

import inspect
import json
import tempfile
import warnings
from pathlib import Path

from slmops.errors import ExportError
from slmops.export import MODEL_FILE
from slmops.export.fallback_graph import (
    convert_precision,
    first_matching,
    log_drift,
    optimize_graph,
)
from slmops.export.runners.base import FORMAT, METADATA_FILE
from slmops.progress import Log

PRECISIONS = ("fp32", "fp16", "int8", "int4")
OPSET = 17
# Additive mask for blocked positions: zeroes a softmax weight, yet stays finite in fp16
# (min -65504), so a fully padded row averages instead of turning into NaN and spreading.
MASK_MIN = -3.0e4
_TRACE_BATCH, _TRACE_NEW, _TRACE_PAST = 2, 4, 3


def export_with_torch(model_dir: Path, out_dir: Path, *, precision: str, log: Log) -> dict:
    """Write model.onnx (+ model.onnx.data), the tokenizer and slmops_onnx.json into the
    empty ``out_dir``; return the slmops_onnx.json contents."""
    from slmops.models import load_causal_lm, load_tokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if precision not in PRECISIONS:
        raise ExportError(
            f"precision {precision!r} is not one the fallback exporter writes; "
            f"use one of {', '.join(PRECISIONS)}"
        )
    log(f"fallback export of {model_dir} with torch.onnx (precision {precision})")
    # Eager attention: plain matmul + softmax with our additive mask, on every architecture.
    model = load_causal_lm(str(model_dir), attn_implementation="eager")
    tokenizer = load_tokenizer(str(model_dir))
    spec = _describe(model, tokenizer, model_dir, precision)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".fallback-") as work:
        work = Path(work)
        exported = _trace(model, spec, work / "exported.onnx", model_dir, log)
        optimized = optimize_graph(exported, model.config, work / "optimized.onnx", log)
        chosen = first_matching(model, spec, [p for p in (optimized, exported) if p], log)
        convert_precision(chosen, out_dir / MODEL_FILE, precision, log)
    if precision != "fp32":
        log_drift(model, out_dir / MODEL_FILE, spec, log)
    tokenizer.save_pretrained(out_dir)
    (out_dir / METADATA_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    size_mb = sum(f.stat().st_size for f in out_dir.glob(MODEL_FILE + "*")) / 2**20
    log(f"wrote {out_dir / MODEL_FILE} ({size_mb:.1f} MiB) and {METADATA_FILE}")
    return spec


def _describe(model, tokenizer, model_dir: Path, precision: str) -> dict:
    """slmops_onnx.json: I/O names and cache shapes (read off a real forward pass, so no
    per-architecture config field names are guessed), stop and pad ids."""
    from slmops.inference import stop_ids

    layer_shapes = _cache_shapes(model, model_dir)
    num_layers = len(layer_shapes)
    _, num_kv_heads, _, head_dim = layer_shapes[0]
    kv_names = [(f"{i}.key", f"{i}.value") for i in range(num_layers)]
    eos_ids = sorted(stop_ids(tokenizer, model))
    candidates = (tokenizer.pad_token_id, getattr(model.config, "pad_token_id", None), *eos_ids)
    # Any id will do when there is none: padded positions are masked.
    pad_id = next((i for i in candidates if i is not None), 0)
    return {
        "format": FORMAT,
        "inputs": ["input_ids", "attention_mask"]
        + [f"past_key_values.{name}" for pair in kv_names for name in pair],
        "outputs": ["logits"] + [f"present.{name}" for pair in kv_names for name in pair],
        "kv_cache": True,
        "num_layers": num_layers,
        "num_kv_heads": int(num_kv_heads),
        "head_dim": int(head_dim),
        "eos_token_ids": eos_ids,
        "pad_token_id": int(pad_id),
        "precision": precision,
        "max_positions": getattr(model.config, "max_position_embeddings", None),
        "model_type": model.config.model_type,
    }


def _cache_shapes(model, model_dir: Path) -> list[tuple[int, ...]]:
    """Per-layer key shapes after a 2-token forward; refuses caches that are not one plain
    full-attention key/value pair per layer (sliding window, linear attention...)."""
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer

    planned = DynamicCache(config=model.config).layers
    odd = sorted({type(layer).__name__ for layer in planned if type(layer) is not DynamicLayer})
    if odd:
        raise ExportError(
            f"{model_dir} ({model.config.model_type}) uses {', '.join(odd)} cache layers; the "
            "torch.onnx fallback exports full-attention decoders only. Export it with "
            "onnxruntime-genai's builder or optimum-onnx instead."
        )
    cache = DynamicCache()
    with torch.inference_mode():
        model(
            input_ids=torch.zeros(1, 2, dtype=torch.long),
            use_cache=True,
            **{_cache_kwarg(model): cache},
        )
    shapes = [tuple(layer.keys.shape) for layer in cache.layers]
    if not shapes or len({shape[1:] for shape in shapes}) != 1:
        raise ExportError(
            f"{model_dir}: the key/value cache has per-layer shapes {shapes}; the torch.onnx "
            "fallback needs one shape for all layers"
        )
    return shapes


def _cache_kwarg(model) -> str:
    # transformers 5.24 renamed `past_key_values` to `cache` (old name deprecated).
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _decoder_step(model, num_layers: int):
    """``model`` as one decoder call on flat tensors, in eval mode.

    The wrapper must be in eval mode: the TorchScript exporter restores the wrapper's
    training flag recursively after export, and a fresh Module is in training mode, so
    exporting it un-eval'd leaves the HF model with dropout on afterwards (that is what
    made a quick GPT-2 export look 0.27 off: the ONNX graph was right, PyTorch was not).
    """
    import torch
    from transformers.cache_utils import DynamicCache

    cache_kwarg = _cache_kwarg(model)
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters

    class DecoderStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, *past):
            mask, position_ids = causal_mask_and_positions(input_ids, attention_mask)
            cache = DynamicCache([(past[2 * i], past[2 * i + 1]) for i in range(num_layers)])
            extra = {"position_ids": position_ids} if takes_positions else {}
            output = self.model(
                input_ids=input_ids,
                attention_mask=mask.to(self.model.dtype),
                use_cache=True,
                **{cache_kwarg: cache},
                **extra,
            )
            present = [t for layer in cache.layers for t in (layer.keys, layer.values)]
            return (output.logits, *present)

    return DecoderStep().eval()


def causal_mask_and_positions(input_ids, attention_mask):
    """Additive [batch, 1, new, past+new] mask and [batch, new] position ids, built from
    tensor ops only (no Python ints from shapes), so a trace stays shape-generic.

    Query ``q`` (the ``past_len + q``-th token) sees key ``k`` when ``k <= past_len + q``
    and ``attention_mask[k]`` is 1. Positions count real tokens only, as
    ``generate`` does, so a left-padded prompt gets the same positions as an unpadded one.
    """
    import torch

    ones_new = torch.ones_like(input_ids)
    ones_all = torch.ones_like(attention_mask)
    past_len = ones_all.sum(-1, keepdim=True) - ones_new.sum(-1, keepdim=True)
    query_index = ones_new.cumsum(-1) - 1 + past_len  # [batch, new], index into keys
    key_index = ones_all.cumsum(-1) - 1  # [batch, past+new]
    visible = (key_index[:, None, :] <= query_index[:, :, None]) & (attention_mask[:, None, :] > 0)
    mask = torch.where(visible, 0.0, MASK_MIN)[:, None]
    real_positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return mask, torch.gather(real_positions, 1, query_index)


def _trace(model, spec: dict, path: Path, model_dir: Path, log: Log) -> Path:
    import torch

    step = _decoder_step(model, spec["num_layers"])
    batch, new, past_len = _TRACE_BATCH, _TRACE_NEW, _TRACE_PAST
    # A non-empty past and unequal lengths keep every dimension visibly dynamic in the trace.
    past_shape = (batch, spec["num_kv_heads"], past_len, spec["head_dim"])
    args = (
        torch.randint(0, model.config.vocab_size, (batch, new)),
        torch.ones(batch, past_len + new, dtype=torch.long),
        *[torch.randn(past_shape) for _ in spec["inputs"][2:]],
    )
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    axes |= {name: {0: "batch_size", 2: "past_sequence_length"} for name in spec["inputs"][2:]}
    axes |= {name: {0: "batch_size", 2: "total_sequence_length"} for name in spec["outputs"][1:]}
    log(f"tracing {spec['num_layers']} layers with the TorchScript exporter (opset {OPSET})")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about Python branches we bypass
            torch.onnx.export(
                step,
                args,
                str(path),
                input_names=spec["inputs"],
                output_names=spec["outputs"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ExportError(
            f"torch.onnx could not trace {model_dir} ({model.config.model_type}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Export it with onnxruntime-genai's builder or optimum-onnx instead."
        ) from exc
    finally:
        model.eval()
    return path
