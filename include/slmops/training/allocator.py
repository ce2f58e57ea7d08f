"""glibc's allocator told to keep the memory a training step frees, for the next step.

A training step allocates and frees gigabytes of activations and gradients (on 200-token
rows, batch 8, the bundled model: a 7.5 GB peak). With glibc's defaults, memory freed at
the top of the heap is handed back to the kernel once more than a few MB are free, and
blocks above the (dynamic) mmap threshold are unmapped on free, so every step faults the
same pages in again and the kernel zeroes them. Keeping them (a high trim threshold, a
fixed 32 MB mmap threshold, a 1 GB top pad) trained those rows 1.2x faster at the same
peak (``benchmarks/train_throughput.py``: "slmops, glibc defaults" against "slmops").

``kept_freed_memory`` sets that for the duration of training, then lowers the thresholds
again and returns what is free to the kernel, so the rest of a long-lived process
(``slmops run``, ``airflow dags test``) does not sit on the training's peak. Elsewhere
than glibc, or with SLMOPS_KEEP_FREED_MEMORY=0, it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator

from slmops.config import switched_off

ENV = "SLMOPS_KEEP_FREED_MEMORY"

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_KEEP = {
    _M_TRIM_THRESHOLD: 2**31 - 1,  # mallopt takes an int: 2 GB, never reached in a step
    _M_TOP_PAD: 1 << 30,  # grow the heap 1 GB at a time (address space; pages on use)
    _M_MMAP_THRESHOLD: 32 << 20,  # glibc's largest: blocks below it come from the heap
}
# Afterwards: where glibc's own dynamic thresholds settle in a process that has freed
# blocks of 32 MB and more (mmap threshold 32 MB, trim threshold twice that), and the
# default top pad. Any mallopt call turns the dynamic adjustment off for good, so these are
# set rather than "the defaults", which would pin the mmap threshold at 128 KB.
_AFTER = {
    _M_TRIM_THRESHOLD: 64 << 20,
    _M_TOP_PAD: 128 * 1024,
    _M_MMAP_THRESHOLD: 32 << 20,
}


def _glibc():
    if switched_off(ENV):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (not musl, not macOS)
        return libc
    except (OSError, AttributeError):
        return None


def _set(libc, settings: dict[int, int]) -> None:
    for parameter, value in settings.items():
        libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value))


@contextlib.contextmanager
def kept_freed_memory() -> Iterator[bool]:
    """Within the block glibc keeps freed memory for reuse; yields whether it does."""
    libc = _glibc()
    if libc is None:
        yield False
        return
    _set(libc, _KEEP)
    try:
        yield True
    finally:
        _set(libc, _AFTER)
        libc.malloc_trim(ctypes.c_size_t(0))
