"""Fault injection on real files: a real ONNX export of the tiny model, child processes
killed at chosen points (faults.py, fault_runs.Child), a small tmpfs."""

from __future__ import annotations

import subprocess

import pytest
from fault_runs import TARGET, Child


@pytest.fixture(scope="session")
def tiny_export(tiny_model_dir, tmp_path_factory):
    """A real cpu-fp32 export of the tiny Llama (onnxruntime-genai builder)."""
    from slmops.export.optimize import optimize

    out = tmp_path_factory.mktemp("export") / TARGET
    optimize(tiny_model_dir, TARGET, out, parity=False, benchmark=False)
    return out


@pytest.fixture
def child(tmp_path):
    started = []

    def start(pause: str, *args: str, name: str = "child") -> Child:
        started.append(Child(tmp_path, pause, *args, name=name))
        return started[-1]

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, unmounted after the test; skipped where it cannot be mounted."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
