"""Multi-process training: one torchrun process group on this machine, run and watched
from the process that asked for it (the CLI, or the Airflow task).

The launcher holds the training folder's lock for the whole group, writes the settings
and the checkpoint every process resumes from to ``group.json``, streams each process's
rank-tagged lines into its own log, and stops the whole group — torchrun and every
training process — when it ends early: a timeout, an exception, a task kill (``stop_all``).
Training processes also die with torchrun (``die_with_parent``), so a launcher killed
with SIGKILL leaves nothing behind either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from slmops import errors
from slmops.artifacts import atomic_write_json, read_json_if_any
from slmops.devices import Placement
from slmops.errors import ConfigError, TrainingGroupFailed
from slmops.progress import Log
from slmops.training.config import FinetuneConfig

WORKER_MODULE = "slmops.training.group_worker"
GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL when a group is stopped
_TAIL_LINES = 30

_running: set[subprocess.Popen] = set()
_stopped: set[int] = set()  # pids stopped by stop_all
_running_lock = threading.Lock()


def check_group(config: FinetuneConfig, placement: Placement) -> None:
    """Refuse a group this machine cannot run, before anything is written."""
    if config.num_processes == 1:
        return
    if config.fsdp and not placement.on_gpu:
        raise ConfigError(
            "--fsdp shards the model across GPUs and needs CUDA devices; on CPU use plain "
            "data parallelism (--num_processes without --fsdp)"
        )
    if placement.on_gpu:
        import torch

        visible = torch.cuda.device_count()
        if config.num_processes > visible:
            raise ConfigError(
                f"--num_processes {config.num_processes}: one process per GPU, and "
                f"{visible} GPU(s) are visible here (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); lower --num_processes"
            )


def launch(
    config: FinetuneConfig,
    *,
    resume_from: Path | None,
    log: Log,
    timeout: float | None = None,
) -> None:
    """Train with ``config.num_processes`` processes; returns when all have finished.

    A process's refusal (a ``SlmopsError``) is raised here as the same type; any other
    failure, a timeout included, is a retryable ``TrainingGroupFailed`` with the last lines.
    """
    folder = config.folder
    folder.group_error.unlink(missing_ok=True)
    atomic_write_json(
        folder.group_settings,
        {
            "config": config.model_dump(mode="json"),
            "resume_from": str(resume_from) if resume_from else None,
        },
    )
    command = torchrun_command(config.num_processes, folder.group_settings)
    log(
        f"launching {config.num_processes} training processes with torchrun "
        f"({'FSDP, ' if config.fsdp else ''}global batch "
        f"{global_batch_size(config)}): {' '.join(command[2:])}"
    )
    try:
        with _group(command, group_environment(config)) as process:
            tail, timed_out = _follow(process, log, timeout)
            killed = process.pid in _stopped
        if timed_out:
            raise TrainingGroupFailed(
                f"training did not finish within {timeout:.0f} s; the group was stopped and a "
                "rerun resumes from its last checkpoint"
            )
        if killed:
            raise TrainingGroupFailed(
                "the training processes were stopped (the task was killed); a rerun resumes "
                "from the last checkpoint"
            )
        if process.returncode or not folder.metrics.is_file():
            raise _failure(folder.group_error, process.returncode, tail)
    finally:
        folder.group_settings.unlink(missing_ok=True)


def global_batch_size(config: FinetuneConfig) -> int:
    return (
        config.per_device_train_batch_size
        * config.num_processes
        * config.gradient_accumulation_steps
    )


def torchrun_command(num_processes: int, settings: Path) -> list[str]:
    """torchrun on one host; its rendezvous is a free port on the loopback."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={num_processes}",
        "--max-restarts=0",
        "--module",
        WORKER_MODULE,
        str(settings),
    ]


def group_environment(config: FinetuneConfig) -> dict[str, str]:
    """The launcher's environment, plus what the processes need to import the same code,
    share the CPU cores without oversubscribing them, and talk over the loopback."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding slmops/
    paths = [package_root, *(entry for entry in sys.path if entry and Path(entry).is_dir())]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // config.num_processes)))
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one host: gloo never leaves the machine
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def stop_all() -> None:
    """Stop every group this process started (an Airflow task's ``on_kill``); their
    ``launch`` calls then raise ``TrainingGroupFailed``."""
    with _running_lock:
        running = list(_running)
        _stopped.update(process.pid for process in running)
    for process in running:
        _stop(process)


@contextlib.contextmanager
def _group(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # a Ctrl-C or task signal reaches it through us, not twice
        preexec_fn=die_with_parent,
    )
    with _running_lock:
        _running.add(process)
    try:
        yield process
    finally:
        _stop(process)
        with _running_lock:
            _running.discard(process)
            _stopped.discard(process.pid)


def _follow(process: subprocess.Popen, log: Log, timeout: float | None):
    """Pass each line on as it comes; stop the group when ``timeout`` seconds have passed."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    expired = threading.Event()
    timer = None
    if timeout:
        timer = threading.Timer(timeout, lambda: (expired.set(), _stop(process)))
        timer.daemon = True
        timer.start()
    try:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                log(line)
        process.wait()
    finally:
        if timer:
            timer.cancel()
    return list(tail), expired.is_set()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM torchrun and its training processes (each in a session of its own), then
    SIGKILL whatever is left after the grace period. torchrun is reaped through Popen
    (so its exit status stays known), the processes it started through psutil."""
    import psutil

    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if process.poll() is None:
        process.terminate()
    for member in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    try:
        process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(descendants, timeout=GRACE_SECONDS)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)


def _failure(error_file: Path, returncode: int, tail: list[str]) -> Exception:
    """A process's refusal as its own type (not retried); else a retryable failure."""
    refused = read_json_if_any(error_file)
    if refused:
        kind = getattr(errors, refused.get("type", ""), None)
        if not (isinstance(kind, type) and issubclass(kind, errors.SlmopsError)):
            kind = errors.TrainingError
        try:
            return kind(refused["message"])
        except TypeError:  # a type built from other arguments than a message
            return errors.TrainingError(refused["message"])
    shown = "\n".join(tail[-12:])
    what = f"failed (torchrun exit {returncode})" if returncode else "wrote no metrics"
    return TrainingGroupFailed(
        f"the training processes {what}; a rerun resumes from the last checkpoint. "
        f"Last lines:\n{shown}"
    )


def record_refusal(error_file: Path, exc: errors.SlmopsError) -> None:
    """Called by a training process that refuses its work: the launcher raises it as is."""
    atomic_write_json(error_file, {"type": type(exc).__name__, "message": str(exc)})


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies, so nothing is orphaned."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
