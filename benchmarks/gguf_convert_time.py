"""The bundled model's GGUF -> Hugging Face conversion (the first `slmops models pull`,
`make setup`), with transformers parsing the GGUF as it ships (three times, a name map
per submodule) against ``slmops.gguf_once.parsed_once`` (once), each in its own process,
alternating, and the two converted folders compared byte for byte.

    python benchmarks/gguf_convert_time.py [--rounds 2]

Prints each conversion's seconds, the medians and their ratio, and whether every file of
the two folders is identical.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time
from pathlib import Path

from side_by_side import alternate, print_medians

# The child converts into argv[1]; argv[2] == "as-shipped" takes parsed_once away.
CHILD = """
import contextlib, sys
from pathlib import Path
from slmops import model_store
if sys.argv[2] == "as-shipped":
    model_store.parsed_once = contextlib.nullcontext
spec = model_store.BUNDLED_MODELS[model_store.DEFAULT_MODEL]
model_store.convert_gguf(model_store.locate_gguf(spec), Path(sys.argv[1]))
"""
WAYS = {"transformers as shipped (3 parses)": "as-shipped", "slmops (parsed once)": "once"}


def convert(way: str, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", CHILD, str(out), way],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ways = {label: functools.partial(convert, way) for label, way in WAYS.items()}
    seconds, identical = alternate(ways, args.rounds, "gguf-convert-")
    shipped, once = print_medians("conversion", seconds)
    ratio = once / shipped
    print(f"\nparsed once / as shipped = {ratio:.2f}x the time; files identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
