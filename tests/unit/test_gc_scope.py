"""slmops.gc_scope.collect_only_new: collections inside the block walk only what it made,
what it leaves behind is freed when it ends, and nothing stays frozen after it."""

import gc
import subprocess
import sys
import threading
import weakref

import pytest

from slmops.cli import main
from slmops.gc_scope import ONE_JOB_THRESHOLD, collect_only_new


class Node:
    """A reference cycle (as a model's modules make): only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


def dropped_cycle() -> weakref.ref:
    return weakref.ref(Node())


def test_a_cycle_made_inside_is_freed_by_a_collection_inside():
    with collect_only_new():
        assert gc.get_freeze_count() > 0
        made_inside = dropped_cycle()
        gc.collect()
        assert made_inside() is None
    assert gc.get_freeze_count() == 0


def test_older_objects_are_skipped_inside_and_collectable_after():
    gc.disable()  # no automatic collection between making the cycle and freezing it
    try:
        older = dropped_cycle()
        with collect_only_new():
            gc.collect()
            assert older() is not None  # frozen: not walked inside the block
        gc.collect()
        assert older() is None  # back in the oldest generation, freed by a full collection
    finally:
        gc.enable()


def test_what_the_block_leaves_behind_is_freed_when_it_ends():
    with collect_only_new():
        left_behind = dropped_cycle()
        assert left_behind() is not None  # no collection ran inside
    assert left_behind() is None


def test_nested_blocks_freeze_and_unfreeze_once():
    # Frozen objects can still be freed (by refcount, here or in another thread of the test
    # worker), so the frozen count may only fall while a block is open: an inner block that
    # froze again would add the thousand lists made after the outer block began.
    with collect_only_new():
        made_after_the_outer_freeze = [[] for _ in range(1000)]
        frozen = gc.get_freeze_count()
        with collect_only_new():
            assert gc.get_freeze_count() <= frozen
        assert gc.get_freeze_count() > frozen // 2  # the inner end leaves the outer block frozen
        assert gc.get_freeze_count() <= frozen
        del made_after_the_outer_freeze
    assert gc.get_freeze_count() == 0


def test_blocks_overlapping_in_threads_unfreeze_when_the_last_ends():
    entered, release = threading.Event(), threading.Event()

    def other():
        with collect_only_new():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    entered.wait(10)
    with collect_only_new():
        pass
    assert gc.get_freeze_count() > 0  # the other thread's block is still open
    release.set()
    thread.join(10)
    assert gc.get_freeze_count() == 0


def test_a_decorated_function_runs_inside_a_block():
    @collect_only_new()
    def stage():
        return gc.get_freeze_count()

    assert stage() > 0 and gc.get_freeze_count() == 0


def test_the_named_modules_are_imported_before_the_freeze(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    with collect_only_new("colorsys"):
        assert "colorsys" in sys.modules


def test_the_command_collects_less_often():
    probe = (
        "import gc, sys\n"
        "from slmops import cli\n"
        "print(*gc.get_threshold())\n"
        "sys.argv = ['slmops', '--version']\n"
        "try:\n"
        "    cli.console()\n"
        "except SystemExit:\n"
        "    print(*gc.get_threshold())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    default, version, tuned = done.stdout.strip().splitlines()
    assert version.startswith("slmops ")
    assert tuned.split() == [str(ONE_JOB_THRESHOLD), *default.split()[1:]]


def test_main_called_in_process_leaves_the_collector_alone():
    before = gc.get_threshold()
    with pytest.raises(SystemExit):
        main(["--version"])
    assert gc.get_threshold() == before
