"""ONNX export per deployment target: onnxruntime-genai's model builder first, a
torch.onnx fallback for architectures it does not know, quantization, multi-adapter models.

Nothing here imports Airflow. ``optimize.optimize`` (one target of a trained model: export,
parity check, benchmark) is what the pipeline and ``slmops auto-opt`` call;
``generate_adapters`` is ``slmops generate-adapter``; ``runners.open_exported`` runs an
exported folder.
"""

from slmops import lazy_exports

# The graph file of every exported folder, from the genai builder and the fallback alike.
MODEL_FILE = "model.onnx"

_ENTRY_POINTS = {
    "AutoOptConfig": "slmops.export.config",
    "GenerateAdapterConfig": "slmops.export.config",
    "TARGETS": "slmops.export.targets",
    "resolve_target": "slmops.export.targets",
    "generate_adapters": "slmops.export.multi_adapter",
    "open_exported": "slmops.export.runners",
}
__all__ = ["MODEL_FILE", *sorted(_ENTRY_POINTS)]
__getattr__ = lazy_exports(__name__, _ENTRY_POINTS)
