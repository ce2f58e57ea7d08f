"""Training keeps the memory a step frees for the next step, and gives it back after."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, sys
import numpy as np, psutil
from slmops.training.allocator import kept_freed_memory

MB = 1 << 20
def rss():
    return psutil.Process().memory_info().rss / MB

def allocate_and_free():
    # 25 blocks of 8 MB, as a step's activations: written, so their pages are resident
    blocks = [np.ones(MB, dtype=np.float64) for _ in range(25)]
    high = rss()
    del blocks
    return high - rss()  # MB handed back to the kernel by the frees

# In a fresh process glibc maps blocks this large on their own and unmaps them on free.
result = {}
with kept_freed_memory() as kept:
    result["kept"] = kept
    result["inside_freed"] = allocate_and_free()
    before_exit = rss()
result["returned_on_exit"] = before_exit - rss()
print(json.dumps(result))
"""


def _probe(**env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_freed_memory_is_kept_during_training_and_returned_after():
    result = _probe()
    assert result["kept"] is True
    assert result["inside_freed"] < 50  # kept in the heap for the next step
    assert result["returned_on_exit"] > 150  # trimmed when training ends


def test_it_can_be_turned_off():
    result = _probe(SLMOPS_KEEP_FREED_MEMORY="0")
    assert result["kept"] is False
    assert result["inside_freed"] > 150  # glibc's defaults: unmapped on free
