"""Garbage collections that skip the objects a process already held when a stage began.

Stages call ``gc.collect()`` after dropping a model, so that its reference cycles are freed
before the next model loads (one copy in memory at a time), and transformers' Trainer
collects when training starts. Each such collection walks every object the process tracks:
in an Airflow task, ``airflow dags test`` or a pytest worker that is hundreds of thousands
of objects made by imports (modules, classes, functions of Airflow, torch, transformers, Great
Expectations), 0.3-0.7 s a collection, several per stage.

``collect_only_new()`` freezes what exists when the block starts (``gc.freeze``), so those
collections walk only what the block made: the models and data of the stage. When the block
ends, what it left behind is collected (still only its own objects) and the frozen objects
go back to the oldest generation, where Python's own collections see them again: nothing is
kept for good. Reentrant: only the outermost block freezes and unfreezes.

In a fresh process (an Airflow task, a CLI command) the block itself would import torch and
transformers, and their objects would be walked by every collection in it and once more when
it ends: the modules a block uses anyway are named, and imported before the freeze.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
# The young generation's threshold in a process that runs one job and exits (Python's
# default: 700). Importing torch and transformers and loading a model allocate hundreds of
# thousands of long-lived objects: at 700 that is a collection every 700 of them, and every
# hundredth one walks everything already there (1.2 s of GC in an 8 s tiny `slmops
# finetune`, 0.4 s at this threshold).
ONE_JOB_THRESHOLD = 50_000


def collect_less_often() -> None:
    """For a process that runs one job and exits (the CLI, a training rank, the builder's
    child): imports and model loading trigger a few collections instead of thousands.
    Cycles are still freed, a little later."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(ONE_JOB_THRESHOLD, middle, old)


@contextlib.contextmanager
def collect_only_new(*imported_first: str) -> Iterator[None]:
    """A block (or, called, a decorator) whose collections walk only what it made; the
    modules in ``imported_first`` are imported before the freeze."""
    global _depth
    for module in imported_first:
        importlib.import_module(module)
    with _lock:
        if _depth == 0:
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.collect()
                gc.unfreeze()
