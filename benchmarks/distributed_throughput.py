"""Data-parallel training throughput: 1 process against N processes, side by side.

Each run is ``slmops finetune`` on the demo tone data and the bundled SmolLM2-135M-Instruct
(LoRA, the demo's settings), one after the other in one invocation. Tokens/s counts real
(non-padding) tokens of every process over rank 0's training time.

    python benchmarks/distributed_throughput.py                 # CPU: 1 vs 2 processes
    python benchmarks/distributed_throughput.py --device gpu --processes 1,2,4,8

Scaling:
- ``strong`` (the CPU default): the global batch stays --batch (8), split over the
  processes (1 x 8 against 2 x 4): the same work, the same loss history; only speed moves.
- ``weak`` (the GPU default): each process keeps --batch rows, so N processes take N times
  the rows per step; what a multi-GPU worker is for.

The goal on a multi-GPU worker (NCCL, one process per GPU, weak scaling): tokens/s with N
GPUs >= 0.85 x N x one GPU's, up to 8 GPUs on one host. On CPU the processes share the
machine's cores (OMP threads are divided between them), so on 2 cores the gain is small or
none: the number printed there checks that the group costs little, not that it scales.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIG = ROOT / "include" / "configs" / "finetune" / "phrase_tones.yaml"
GPU_GOAL = 0.85  # scaling efficiency, weak scaling on one multi-GPU host


def train(processes: int, batch: int, steps: int, device: str, out: Path) -> dict:
    command = [
        sys.executable, "-m", "slmops", "finetune", "--config", str(RUN_CONFIG),
        "-o", str(out), "--max_steps", str(steps), "--eval_steps", str(steps),
        "--logging_steps", str(steps), "--per_device_train_batch_size", str(batch),
        "--num_processes", str(processes), "--device", device, "--merge_adapter", "false",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "training_metrics.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--processes", default=None, help="comma list (default: 1,2)")
    parser.add_argument("--scaling", choices=("strong", "weak"), default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    counts = [int(n) for n in (args.processes or "1,2").split(",")]
    scaling = args.scaling or ("strong" if args.device == "cpu" else "weak")

    rows = {}
    with tempfile.TemporaryDirectory(prefix="slmops-bench-ddp-") as tmp:
        for count in counts:
            if scaling == "strong" and args.batch % count:
                parser.error(f"--batch {args.batch} does not split over {count} processes")
            per_process = args.batch // count if scaling == "strong" else args.batch
            print(f"training with {count} x {per_process} ...", file=sys.stderr, flush=True)
            out = Path(tmp) / str(count)
            rows[count] = train(count, per_process, args.steps, args.device, out)

    single = rows[counts[0]]
    print(f"\n{args.steps} steps, {scaling} scaling, device {args.device}\n")
    print("| processes | batch per process | global batch | tokens/s | train s | vs 1 process |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count, m in rows.items():
        ratio = m["tokens_per_second"] / single["tokens_per_second"]
        per_process = m["config"]["per_device_train_batch_size"]
        print(
            f"| {count} | {per_process} | {m['global_batch_size']} | "
            f"{m['tokens_per_second']:,.0f} | {m['train_runtime_s']:.1f} | {ratio:.2f}x |"
        )
    losses = {count: m["final_train_loss"] for count, m in rows.items()}
    print(f"\nfinal train loss per process count: {losses}")
    if args.device == "gpu" and scaling == "weak":
        for count, m in rows.items():
            efficiency = m["tokens_per_second"] / (count * single["tokens_per_second"])
            print(f"{count} GPUs: scaling efficiency {efficiency:.2f} (goal >= {GPU_GOAL})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
