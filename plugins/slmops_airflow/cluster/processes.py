"""The processes a supervisor starts: each in a session of its own, known by PID and start
time, stopped with its whole tree.

Airflow components fork (the scheduler's executor, Celery's pool, a task's supervisor and
the task itself, torchrun ranks), and some of those start sessions of their own, so a
process-group signal misses them. The supervisor therefore becomes a child subreaper
(orphans are re-parented to it, not to init) and stops trees found with psutil.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Loaded before any fork: the child only calls it (no import, no dlopen after fork).
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def become_subreaper() -> None:
    """Descendants whose parent dies are re-parented to this process, so they stay in its
    tree (and are stopped with it) instead of escaping to init."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _signal_on_parent_death(sig: int) -> Callable[[], None] | None:
    if _LIBC is None:
        return None

    def arm() -> None:  # runs in the child between fork and exec
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)

    return arm


def stop_with_parent() -> None:
    """This process gets SIGTERM when its parent dies (e.g. `make`, killed)."""
    if (arm := _signal_on_parent_death(signal.SIGTERM)) is not None:
        arm()


@dataclass(frozen=True)
class ProcessId:
    """A PID with its start time: a recycled PID is not mistaken for the process."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """The live process, or None when it ended (or the PID now names another one)."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) > 0.01:
                return None
            return None if process.status() == psutil.STATUS_ZOMBIE else process
        except psutil.NoSuchProcess:
            return None


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def stop_tree(root: psutil.Process, *, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """``sig`` to ``root``, up to ``grace`` seconds for it to end (its own shutdown stops its
    children), then SIGTERM and SIGKILL for whatever of its tree is still there."""
    try:
        family = root.children(recursive=True)
        root.send_signal(sig)
    except psutil.NoSuchProcess:
        return
    psutil.wait_procs([root], timeout=grace)
    with contextlib.suppress(psutil.NoSuchProcess):
        family += root.children(recursive=True)
    left = alive([root, *family])
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    for process in psutil.wait_procs(left, timeout=10)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def kill_tree(root: psutil.Process) -> None:
    """SIGKILL to ``root`` and every descendant at once: what a crashed host does."""
    with contextlib.suppress(psutil.NoSuchProcess):
        family = [root, *root.children(recursive=True)]
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(family, timeout=10)


def reap_orphans(own: set[int]) -> None:
    """Collect the exit status of orphans re-parented to this subreaper (zombies), leaving
    the children in ``own`` to their Popen objects."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess, ChildProcessError):
            if child.pid not in own and child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


@dataclass
class Component:
    """One long-running process of the cluster, like a compose service with
    ``restart: always``: the supervisor starts it again when it exits."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    stop_signal: int = signal.SIGTERM
    user: str | None = None  # run as this user (postgres refuses to run as root)
    restart: bool = True
    popen: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0

    def start(self) -> ProcessId:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n==== {time.strftime('%F %T')} starting {self.name}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor only
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
                preexec_fn=_signal_on_parent_death(self.stop_signal),
            )
        self.started_at = time.monotonic()
        return ProcessId.of(self.popen.pid)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return self.popen.poll() if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 30.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                stop_tree(psutil.Process(self.popen.pid), sig=self.stop_signal, grace=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
