"""A child process that runs one slmops step and stops at a chosen point, so a test can
SIGKILL it there (or let it go on): ``python faults.py MODULE:FUNCTION:MATCH:WHEN ACTION ...``.

The step's own code runs unchanged; only FUNCTION (looked up in MODULE at call time) is
wrapped: on its first call with an argument containing MATCH, ``before`` or ``after`` the
call, the child writes $FAULT_MARKER and waits until $FAULT_RELEASE exists (a test that
kills it never creates that file).

ACTION is ``publish RUN_DIR MODELS_ROOT`` or ``optimize MODEL TARGET OUT``.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from pathlib import Path


def pause_at(spec: str) -> None:
    module_name, function_name, match, when = spec.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, function_name)
    fired = []

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        hit = not fired and any(match in str(arg) for arg in (*args, *kwargs.values()))
        if hit and when == "before":
            fired.append(True)
            _stop()
        result = real(*args, **kwargs)
        if hit and when == "after":
            fired.append(True)
            _stop()
        return result

    setattr(module, function_name, wrapper)


def _stop() -> None:
    Path(os.environ["FAULT_MARKER"]).write_text(str(os.getpid()))
    release = Path(os.environ.get("FAULT_RELEASE", "/nonexistent/release"))
    while not release.exists():
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    spec, action, *args = argv
    if spec != "-":
        pause_at(spec)
    if action == "publish":
        from slmops.pipeline.publish import publish

        manifest = publish(Path(args[0]), Path(args[1]))
        print(manifest["version"], manifest["sequence"], manifest["latest"])
    elif action == "optimize":
        from slmops.export.optimize import optimize

        optimize(args[0], args[1], Path(args[2]), parity=False, benchmark=False)
    else:
        raise SystemExit(f"unknown action {action}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
