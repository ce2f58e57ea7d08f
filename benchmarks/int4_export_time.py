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
import functools
import subprocess
import sys
import time
from pathlib import Path

from side_by_side import alternate, print_medians

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
    ways = {label: functools.partial(build, module, model) for label, module in BUILDS.items()}
    seconds, identical = alternate(ways, args.rounds, "int4-export-")
    shipped, slmops = print_medians("build", seconds)
    print(f"\nslmops / as shipped = {slmops / shipped:.2f}x the time; files identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
