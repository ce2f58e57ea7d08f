"""python -m slmops_airflow.cluster up | down | status | run -- CMD ...

up        start the stack in the background (the supervisor), return once it is healthy;
          --foreground keeps it attached (Ctrl-C stops it all)
down      stop exactly what `up` started (by PID), whatever its state
status    the components and their PIDs
run       run CMD as a child; SIGTERM or Ctrl-C stops CMD's whole process tree
          (`make airflow`: `airflow standalone` alone leaves its components running)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from slmops_airflow.cluster.errors import ClusterError
from slmops_airflow.cluster.processes import (
    ProcessId,
    alive,
    become_subreaper,
    stop_tree,
    stop_with_parent,
)
from slmops_airflow.cluster.settings import ClusterSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m slmops_airflow.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "supervise"):
        command = commands.add_parser(name)
        command.add_argument("--folder", type=Path, default=Path(".cluster"))
        command.add_argument("--artifacts_root", type=Path, default=Path("artifacts"))
        command.add_argument("--api_port", type=int, default=8080)
        command.add_argument("--postgres_port", type=int, default=15432)
        command.add_argument("--redis_port", type=int, default=16379)
        command.add_argument("--data_roots", help="SLMOPS_DATA_ROOTS for the stages")
        command.add_argument("--slmops_home", type=Path, help="SLMOPS_HOME (model store)")
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an environment variable for every component (e.g. an AIRFLOW__ setting)",
        )
        command.add_argument("--gpu_worker_on_cpu", action="store_true", help=argparse.SUPPRESS)
        command.add_argument("--foreground", action="store_true")
        command.add_argument("--timeout", type=float, default=600, help="seconds to get healthy")
    for name in ("down", "status"):
        commands.add_parser(name).add_argument("--folder", type=Path, default=Path(".cluster"))
    run = commands.add_parser("run")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def _settings(args: argparse.Namespace) -> ClusterSettings:
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ClusterError(f"--set {item}: expected KEY=VALUE")
        overrides[key] = value
    return ClusterSettings(
        folder=args.folder.resolve(),
        artifacts_root=args.artifacts_root.resolve(),
        api_port=args.api_port,
        postgres_port=args.postgres_port,
        redis_port=args.redis_port,
        data_roots=args.data_roots,
        slmops_home=args.slmops_home.resolve() if args.slmops_home else None,
        overrides=overrides,
        gpu_worker_on_cpu=args.gpu_worker_on_cpu,
    )


def _state(folder: Path) -> dict | None:
    path = folder / "state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _live(record: dict) -> psutil.Process | None:
    return ProcessId(record["pid"], record["started"]).process()


def up(args: argparse.Namespace, raw: list[str]) -> int:
    from slmops_airflow.cluster.supervisor import run_supervisor

    settings = _settings(args)
    state = _state(settings.folder)
    if state and _live(state["supervisor"]):
        raise ClusterError(
            f"a cluster from {settings.folder} is already running ({state['url']}); "
            "stop it first: make cluster-stop"
        )
    if args.foreground:
        stop_with_parent()
        return run_supervisor(settings)
    settings.folder.mkdir(parents=True, exist_ok=True)
    (settings.folder / "state.json").unlink(missing_ok=True)
    log = settings.folder / "supervisor.log"
    argv = [sys.executable, "-m", "slmops_airflow.cluster", "supervise", *raw]
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(f"starting the cluster (supervisor PID {daemon.pid}, log {log})", flush=True)
    shown = 0

    def stop_daemon(signum, _frame):
        print("stopping the cluster", flush=True)
        daemon.terminate()
        daemon.wait()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, stop_daemon)
    signal.signal(signal.SIGTERM, stop_daemon)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines[shown:]:
            print("  " + line, flush=True)
        shown = len(lines)
        state = _state(settings.folder)
        if state and state.get("ready"):
            print(
                f"UI and REST API: {state['url']} (user admin, password in "
                f"{settings.airflow_home / 'passwords.json'}); stop: make cluster-stop"
            )
            return 0
        if daemon.poll() is not None:
            print(f"the cluster did not start (see {settings.logs})", file=sys.stderr)
            return 1
        time.sleep(1)
    daemon.terminate()
    daemon.wait()
    print(f"the cluster was not healthy after {args.timeout:.0f} s (see {settings.logs})")
    return 1


def down(folder: Path) -> int:
    state = _state(folder.resolve())
    if state is None:
        print(f"no cluster running from {folder}")
        return 0
    supervisor = _live(state["supervisor"])
    if supervisor:
        supervisor.terminate()
        psutil.wait_procs([supervisor], timeout=120)
    # Whatever the supervisor did not stop (it was killed, or took too long).
    for record in state["components"].values():
        if process := _live(record):
            stop_tree(process, grace=30)
    if supervisor and alive([supervisor]):
        stop_tree(supervisor, grace=5)
    (folder / "state.json").unlink(missing_ok=True)
    print("cluster stopped")
    return 0


def status(folder: Path) -> int:
    state = _state(folder.resolve())
    if state is None or not _live(state["supervisor"]):
        print(f"no cluster running from {folder}")
        return 3
    print(f"{state['url']}  ({'ready' if state['ready'] else 'starting'})")
    for name, record in state["components"].items():
        print(f"  {name:<14} {'running' if _live(record) else 'exited':<8} PID {record['pid']}")
    return 0


def run(argv: list[str]) -> int:
    """CMD as a child in a session of its own; on SIGTERM / SIGINT its whole tree is
    stopped (orphans included: this process is their subreaper), then we exit."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise ClusterError("run: give the command to run after --")
    become_subreaper()
    stop_with_parent()  # `make` killed with SIGTERM takes this (and so CMD's tree) along
    received: list[int] = []
    # Before the child starts: a signal in between would end this process at once and
    # leave CMD's tree (in a session of its own) running.
    signal.signal(signal.SIGTERM, lambda signum, _f: received.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _f: received.append(signum))
    child = subprocess.Popen(argv, start_new_session=True)
    while child.poll() is None and not received:
        time.sleep(0.2)
    me = psutil.Process()
    if child.poll() is None:
        stop_tree(psutil.Process(child.pid), grace=30)
    for orphan in alive(me.children(recursive=True)):
        stop_tree(orphan, grace=5)
    with_code = child.wait()
    return 128 + received[0] if received else with_code


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(raw)
    try:
        if args.command == "up":
            return up(args, [item for item in raw[1:] if item != "--foreground"])
        if args.command == "supervise":
            from slmops_airflow.cluster.supervisor import run_supervisor

            return run_supervisor(_settings(args))
        if args.command == "down":
            return down(args.folder)
        if args.command == "status":
            return status(args.folder)
        return run(args.argv)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
