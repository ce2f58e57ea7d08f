"""ONNX export per deployment target: onnxruntime-genai's model builder first, a
torch.onnx fallback for architectures it does not know, quantization, multi-adapter models.

Nothing here imports Airflow; ``slmops.export.optimize.optimize`` is the library API the
DAG and ``slmops auto-opt`` call.
"""

# The graph file of every exported folder, from the genai builder and the fallback alike.
MODEL_FILE = "model.onnx"
