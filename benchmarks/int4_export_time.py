"""The cpu-int4 export of the bundled model: onnxruntime-genai's builder as it ships
against the builder run by slmops (``slmops.export.builder_child``: onnxruntime's k-quant
over cache-sized slices of rows), with the cpu-int4 target's options (k-quant, LM head
int8), each in its own process, alternating, and the two folders compared byte for byte.

    python benchmarks/int4_export_time.py [--rounds 2]

Prints each build's seconds, the medians and their ratio, and whether every file of the
two folders is identical.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from same_files import same_files

from slmops.export.genai_builder import BUILDER_MODULE, SHIPPED_BUILDER_MODULE, builder_command
from slmops.export.targets import TARGETS
from slmops.models import resolve

BUILDS = {
    "builder as shipped (whole-tensor k-quant)": SHIPPED_BUILDER_MODULE,
    "slmops (k-quant in slices)": BUILDER_MODULE,
}


def build(module: str, model: Path, out: Path) -> float:
    command = builder_command(
        model, out, precision="int4", execution_provider="cpu",
        cache_dir=out.with_name(out.name + "-cache"),
        options=dict(TARGETS["cpu-int4"].builder_options), module=module,
    )  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    model = resolve("smollm2-135m-instruct").path
    seconds: dict[str, list[float]] = {label: [] for label in BUILDS}
    with tempfile.TemporaryDirectory(prefix="int4-export-") as scratch:
        folders = {label: Path(scratch) / f"build-{index}" for index, label in enumerate(BUILDS)}
        for round_ in range(args.rounds):
            for label, module in BUILDS.items():
                seconds[label].append(build(module, model, folders[label]))
                print(f"round {round_ + 1}: {label}: {seconds[label][-1]:.1f} s", file=sys.stderr)
        identical = same_files(*folders.values())
    print("| build | seconds (each round) | median s |")
    print("|---|---|---:|")
    for label, times in seconds.items():
        rounds = ", ".join(f"{value:.1f}" for value in times)
        print(f"| {label} | {rounds} | {statistics.median(times):.1f} |")
    shipped, slmops = (statistics.median(times) for times in seconds.values())
    print(f"\nslmops / as shipped = {slmops / shipped:.2f}x the time; files identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
