"""Find and wait for real processes in tests that kill them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains ``text`` (e.g. a test's tmp path)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(text in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def first_checkpoint(checkpoints: Path) -> Path | None:
    """A complete checkpoint (transformers writes trainer_state.json last)."""
    done = sorted(checkpoints.glob("checkpoint-*/trainer_state.json"))
    return done[0].parent if done else None


def no_processes_left(marker: str, timeout: float = 30.0) -> None:
    left = []

    def gone() -> bool:
        left[:] = processes_mentioning(marker)
        return not left

    try:
        wait_until(gone, timeout=timeout, what="the training processes to end")
    except AssertionError:
        described = [" ".join(p.cmdline()[:6]) for p in left if p.is_running()]
        raise AssertionError(f"processes left behind: {described}") from None
