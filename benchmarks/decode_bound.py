"""The ceiling on batch-1 decode speed set by memory bandwidth, beside the measured speeds
of the last `make demo`'s cpu-int4 benchmark.

Decoding one token at batch 1 reads every weight once (the tied embedding too, as the LM
head), and at this size the weights are far larger than the cache, so tokens/s cannot
exceed (memory read bandwidth) / (bytes of weights). This script measures the read
bandwidth the way a decode step uses it (torch summing a 1 GB float32 tensor on the
process's threads, best of several), takes the bytes of each model's weight files, and
prints each model's ceiling, how much of it the measured speed reaches, and the speed-up
the weight bytes give when both models reach the same share of the bandwidth.

    python benchmarks/decode_bound.py [--run_path RUN] [--gb 1.0] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from inference import demo_run  # benchmarks/inference.py, beside this script

MB = 1e6
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx.data", ".onnx")


def read_bandwidth(gigabytes: float, repeats: int) -> float:
    """Bytes per second of a streaming read of a tensor far larger than the caches."""
    data = torch.ones(int(gigabytes * 1e9 / 4), dtype=torch.float32)
    data.sum()  # touch every page first
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def weight_bytes(folder: Path) -> int:
    return sum(
        path.stat().st_size
        for path in folder.iterdir()
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_path", type=Path, help="a fine-tuning run (default: the demo's)")
    parser.add_argument("--gb", type=float, default=1.0, help="size of the tensor read")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    run = args.run_path or demo_run()
    measured_file = run / "onnx" / "cpu-int4" / "benchmark.json"
    if not measured_file.is_file():
        parser.error(f"{measured_file} is missing: run `make demo` first")
    measured = {row["label"]: row for row in json.loads(measured_file.read_text())}
    folders = {"pytorch-fp32": run / "merged", "cpu-int4": run / "onnx" / "cpu-int4"}

    bandwidth = read_bandwidth(args.gb, args.repeats)
    print(f"read bandwidth: {bandwidth / 1e9:.1f} GB/s ({torch.get_num_threads()} threads)\n")
    print("| model | weight MB | ceiling tok/s | measured tok/s | measured / ceiling |")
    print("|---|---:|---:|---:|---:|")
    sizes = {}
    for label, folder in folders.items():
        sizes[label] = weight_bytes(folder)
        ceiling = bandwidth / sizes[label]
        speed = measured[label]["decode_tokens_per_s"]
        print(
            f"| {label} | {sizes[label] / MB:.1f} | {ceiling:.1f} | {speed} | "
            f"{speed / ceiling:.2f} |"
        )
    byte_ratio = sizes["pytorch-fp32"] / sizes["cpu-int4"]
    torch_share = measured["pytorch-fp32"]["decode_tokens_per_s"] * sizes["pytorch-fp32"]
    torch_share /= bandwidth
    print(
        f"\ncpu-int4 / pytorch-fp32 decode: measured {measured['cpu-int4']['decode_speedup']}x; "
        f"the weight-bytes ratio {byte_ratio:.2f}x (the speed-up when both reach the same "
        f"share of the bandwidth). 8x needs cpu-int4 weights of "
        f"{sizes['pytorch-fp32'] / 8 / MB:.1f} MB or less at that share, or cpu-int4 at "
        f"{8 / byte_ratio * torch_share:.2f} of the bandwidth with PyTorch at {torch_share:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
