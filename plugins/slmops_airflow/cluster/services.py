"""PostgreSQL and Redis for the native cluster: found (or installed from Debian's packages),
initialised under the cluster folder, run as local processes bound to 127.0.0.1."""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from slmops_airflow.cluster.errors import ClusterError
from slmops_airflow.cluster.processes import Component

PACKAGES = ("postgresql", "redis-server")
# Debian's postgresql keeps its server programs outside PATH.
_PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
DB_USER = "airflow"
# One apt-get at a time on this machine (our own installs take it; dpkg's lock, waited
# for below, covers everyone else's).
APT_LOCK = Path(tempfile.gettempdir()) / "slmops-apt.lock"
APT_WAIT = ("-o", "DPkg::Lock::Timeout=600")


def postgres_bin() -> Path | None:
    """The folder of initdb and postgres: $SLMOPS_PG_BIN, Debian's newest, or PATH."""
    if configured := os.environ.get("SLMOPS_PG_BIN"):
        return Path(configured)
    folders = sorted(glob.glob(_PG_BIN_GLOB), key=lambda f: int(Path(f).parent.name), reverse=True)
    for folder in folders:
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def ensure_installed(log: Path) -> tuple[Path, str]:
    """The PostgreSQL bin folder and redis-server, installed with apt-get when missing
    (root only); otherwise an error that says how to install them."""
    if postgres_bin() is None or shutil.which("redis-server") is None:
        _apt_install(log)
    pg_bin, redis = postgres_bin(), shutil.which("redis-server")
    if pg_bin is None or redis is None:
        raise ClusterError(f"apt-get installed {' '.join(PACKAGES)} but no server was found")
    return pg_bin, redis


def _apt_install(log: Path) -> None:
    how = (
        f"install them (Debian/Ubuntu: sudo apt-get install -y {' '.join(PACKAGES)}), "
        "or set SLMOPS_PG_BIN to the folder of initdb and postgres"
    )
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ClusterError(f"PostgreSQL and Redis servers are needed and not installed: {how}")
    print(f"installing {' '.join(PACKAGES)} from Debian's packages (log: {log})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("ab") as out, APT_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if postgres_bin() is not None and shutil.which("redis-server"):
            return  # installed by another process while this one waited
        for argv in (
            ["apt-get", *APT_WAIT, "update", "-qq"],
            ["apt-get", *APT_WAIT, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            if subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise ClusterError(f"`{' '.join(argv)}` failed (see {log}); {how}")


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        raise ClusterError(
            "running as root, PostgreSQL needs an unprivileged user to run as: create the "
            "`postgres` user (Debian's postgresql package does) or run as another user"
        ) from None


def init_postgres(pg_bin: Path, data: Path, password: str, log: Path) -> None:
    """A new database cluster in ``data`` (once): superuser airflow with ``password``,
    password authentication (scram-sha-256) for every connection."""
    if (data / "PG_VERSION").is_file():
        return
    user = _server_user()
    data.mkdir(parents=True, exist_ok=True)
    password_file = data.parent / ".pg-password"
    password_file.write_text(password + "\n", encoding="utf-8")
    try:
        if user:
            shutil.chown(data, user, user)
            shutil.chown(password_file, user, user)
        with log.open("ab") as out:
            done = subprocess.run(
                [
                    str(pg_bin / "initdb"),
                    f"--pgdata={data}",
                    f"--username={DB_USER}",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
    finally:
        password_file.unlink(missing_ok=True)
    if done.returncode:
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster would block the next try
        hint = f" (user {user} must be able to enter every folder above {data})" if user else ""
        raise ClusterError(f"initdb failed{hint}; see {log}")


def postgres(pg_bin: Path, data: Path, port: int, log: Path, cwd: Path) -> Component:
    return Component(
        name="postgres",
        argv=[
            str(pg_bin / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            # TCP only: a socket path under a deep folder can exceed the 107-byte limit.
            "-c",
            "unix_socket_directories=",
            # Scheduler, api-server, dag-processor, triggerer and each Celery worker process
            # (result backend) hold pools of their own.
            "-c",
            "max_connections=200",
        ],
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
        log=log,
        cwd=cwd,
        stop_signal=signal.SIGINT,  # fast shutdown: SIGTERM would wait for every client
        user=_server_user(),
    )


def create_database(port: int, password: str, name: str = "airflow") -> None:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user=DB_USER, password=password, dbname="postgres"
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def postgres_ready(port: int, password: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1",
            port=port,
            user=DB_USER,
            password=password,
            dbname="postgres",
            connect_timeout=2,
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def redis(redis_server: str, data: Path, port: int, password: str, log: Path) -> Component:
    data.mkdir(parents=True, exist_ok=True)
    config = data / "redis.conf"
    # The password goes in a file, not on the command line (ps shows argv to every user).
    config.write_text(
        f"bind 127.0.0.1\nport {port}\nrequirepass {password}\ndir {data}\n"
        # The broker's queue survives a restart (appendonly), without snapshots.
        'appendonly yes\nsave ""\ndaemonize no\nprotected-mode yes\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return Component(
        name="redis",
        argv=[redis_server, str(config)],
        env={"PATH": os.environ.get("PATH", "")},
        log=log,
        cwd=data,
    )


def redis_ready(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            reply = b""
            while b"PONG" not in reply and len(reply) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return b"+PONG" in reply
