"""What one LoRA application costs onnxruntime at decode time (one token), and what a cheaper
layout could save: the floor under the multi-adapter model's speed.

A multi-adapter int4 base applies LoRA as small nodes per layer, its weights graph inputs
(an adapter is chosen per request, its rank symbolic): ``t = x A`` (MatMul), ``u = t B``
(MatMul) and ``Add`` into the base product. This builds a graph of the bundled model's 120
applications (30 layers x q/k/v packed, o, gate/up packed, down; ``lora_fusion``'s
shapes at rank 16) without the base, and times a run of all of them, ways side by side,
best of 5 x 100 runs each:

- inputs, float32: as the multi-adapter model holds them now (MatMul, MatMul, Add);
- initializers, float32: the same weights as constants (onnxruntime may prepack them);
- nodes only: rank 1 and width 1, the same node count: what the nodes cost without bytes;
- Gemm: ``Gemm(t, B, base)`` in place of MatMul + Add (one node less; 2-D only);
- float16 weights (MatMul in float16: half the bytes);

then the float32 inputs again for adapters on fewer projections (all seven, q/k/v/o, q/v).

    python benchmarks/lora_node_cost.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# (input width, packed rank, output width) of each application in a layer, rank 16 each
SHAPES = [(576, 48, 960), (576, 16, 576), (576, 32, 3072), (1536, 16, 576)]
LAYERS = 30
# The same, by the projections an adapter is on (lora_fusion packs a group when any of its
# projections carries LoRA: q and v give one q/k/v branch whose B has zeros where k is).
SHAPES_BY_PROJECTIONS = {
    "all seven (the demo's)": SHAPES,
    "q, k, v, o": [(576, 48, 960), (576, 16, 576)],
    "q, v (packed with k)": [(576, 32, 960)],
    "q, v (one branch each)": [(576, 16, 576), (576, 16, 192)],
}


def build(way: str, shapes=SHAPES):
    """(model, feeds, LoRA weight MB) for one way; the LoRA weights are inputs unless
    ``way`` says not."""
    from onnx import TensorProto, helper, numpy_helper

    half = way == "float16 weights"
    elem, dtype = (TensorProto.FLOAT16, np.float16) if half else (TensorProto.FLOAT, np.float32)
    rng = np.random.default_rng(0)
    nodes, inputs, inits, outputs, feeds = [], [], [], [], {}
    weight_bytes = 0
    for width in (576, 1536):
        inputs.append(helper.make_tensor_value_info(f"x{width}", elem, [1, width]))
        feeds[f"x{width}"] = rng.standard_normal((1, width)).astype(dtype)
    for layer in range(LAYERS):
        for group, (k, rank, n) in enumerate(shapes):
            if way == "nodes only":
                rank, n = 1, 1
            name = f"{layer}_{group}"
            arrays = {
                f"A{name}": rng.standard_normal((k, rank)).astype(dtype) * 0.01,
                f"B{name}": rng.standard_normal((rank, n)).astype(dtype) * 0.01,
                f"base{name}": rng.standard_normal((1, n)).astype(dtype),
            }
            weight_bytes += arrays[f"A{name}"].nbytes + arrays[f"B{name}"].nbytes
            for key, array in arrays.items():
                if way == "initializers, float32" and key[0] in "AB":
                    inits.append(numpy_helper.from_array(array, key))
                else:
                    inputs.append(helper.make_tensor_value_info(key, elem, list(array.shape)))
                    feeds[key] = array
            nodes.append(helper.make_node("MatMul", [f"x{k}", f"A{name}"], [f"t{name}"]))
            if way == "Gemm":
                nodes.append(
                    helper.make_node("Gemm", [f"t{name}", f"B{name}", f"base{name}"], [f"y{name}"])
                )
            else:
                nodes.append(helper.make_node("MatMul", [f"t{name}", f"B{name}"], [f"u{name}"]))
                nodes.append(helper.make_node("Add", [f"base{name}", f"u{name}"], [f"y{name}"]))
            outputs.append(helper.make_tensor_value_info(f"y{name}", elem, None))
    graph = helper.make_graph(nodes, "lora_applications", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model, feeds, weight_bytes / 1e6


def seconds_per_run(model, feeds, threads: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    for _ in range(20):
        session.run(None, feeds)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(100):
            session.run(None, feeds)
        best = min(best, (time.perf_counter() - started) / 100)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    args = parser.parse_args()
    ways = ["inputs, float32", "initializers, float32", "nodes only", "Gemm", "float16 weights"]
    applications = LAYERS * len(SHAPES)
    print(f"{applications} LoRA applications, {args.threads} intra-op threads, best of 5 x 100")
    print(f"{'way':<24} {'weights MB':>11} {'ms / run':>9} {'us / application':>17} {'x now':>6}")
    now = None
    for way in ways:
        model, feeds, weight_mb = build(way)
        seconds = seconds_per_run(model, feeds, args.threads)
        now = now or seconds
        print(
            f"{way:<24} {weight_mb:11.1f} {seconds * 1e3:9.3f} "
            f"{seconds * 1e6 / applications:17.2f} {seconds / now:6.2f}"
        )
    print("\nby the projections the adapter is on (inputs, float32)")
    print(f"{'projections':<24} {'branches':>8} {'weights MB':>11} {'ms / run':>9} {'x now':>6}")
    for label, shapes in SHAPES_BY_PROJECTIONS.items():
        model, feeds, weight_mb = build("inputs, float32", shapes)
        seconds = seconds_per_run(model, feeds, args.threads)
        print(
            f"{label:<24} {LAYERS * len(shapes):8d} {weight_mb:11.1f} {seconds * 1e3:9.3f} "
            f"{seconds / now:6.2f}"
        )


if __name__ == "__main__":
    main()
