"""`make airflow`: a private admin password and nothing listening beyond 127.0.0.1.

The password helper runs for real as a subprocess (as `make airflow` runs it); the
component flags are parsed by Airflow's own CLI parser; the launcher runs for real, with a
stand-in `airflow` on PATH that records how each component was started (starting the real
four takes minutes of CPU here; tests/cluster runs the real processes).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from slmops_airflow.cluster.standalone import component_commands

ROOT = Path(__file__).resolve().parents[2]
AUTH = [sys.executable, "-m", "slmops_airflow.cluster.standalone_auth"]


def _env(**extra: str) -> dict[str, str]:
    """This environment without the user's own settings, plus ``extra``."""
    own = ("SLMOPS_ADMIN_PASSWORD", "SLMOPS_BIND_ADDRESS")
    return {**{k: v for k, v in os.environ.items() if k not in own}, **extra}


def _auth(passwords: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AUTH, str(passwords)], env=_env(**extra), capture_output=True, text=True, timeout=60
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _stored(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# -- the admin password --------------------------------------------------------------------


def test_generated_once_printed_once_kept_private(tmp_path):
    passwords = tmp_path / ".airflow" / "passwords.json"
    first = _auth(passwords)
    assert first.returncode == 0, first.stderr
    password = _stored(passwords)["admin"]
    assert len(password) >= 20 and password != "admin"
    assert password in first.stdout  # shown this once
    assert _mode(passwords) == 0o600
    assert [p.name for p in passwords.parent.iterdir()] == ["passwords.json"]  # no temp left

    before = passwords.stat().st_mtime_ns
    second = _auth(passwords)
    assert second.returncode == 0, second.stderr
    assert _stored(passwords) == {"admin": password}  # not regenerated
    assert password not in second.stdout and str(passwords) in second.stdout
    assert passwords.stat().st_mtime_ns == before
    assert _mode(passwords) == 0o600

    # Another checkout's first start gets another password.
    other = tmp_path / "other" / "passwords.json"
    assert _auth(other).returncode == 0
    assert _stored(other)["admin"] != password


def test_user_password_is_honoured_and_not_printed(tmp_path):
    passwords = tmp_path / "passwords.json"
    assert _auth(passwords).returncode == 0
    given = _auth(passwords, SLMOPS_ADMIN_PASSWORD="my own pass phrase")
    assert given.returncode == 0, given.stderr
    assert _stored(passwords) == {"admin": "my own pass phrase"}
    assert "my own pass phrase" not in given.stdout and "SLMOPS_ADMIN_PASSWORD" in given.stdout
    assert _mode(passwords) == 0o600
    # Unset again: the given one is kept (it is not the old default).
    assert _auth(passwords).returncode == 0
    assert _stored(passwords) == {"admin": "my own pass phrase"}


def test_an_old_admin_admin_file_is_replaced_and_made_private(tmp_path):
    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"admin": "admin", "viewer": "v"}')
    passwords.chmod(0o644)
    done = _auth(passwords)
    assert done.returncode == 0, done.stderr
    stored = _stored(passwords)
    assert stored["admin"] != "admin" and stored["admin"] in done.stdout
    assert stored["viewer"] == "v"  # other users kept
    assert _mode(passwords) == 0o600


def test_a_broken_passwords_file_is_a_clear_error_and_left_alone(tmp_path):
    passwords = tmp_path / "passwords.json"
    passwords.write_text("{not json")
    done = _auth(passwords)
    assert done.returncode != 0
    assert str(passwords) in done.stderr and "delete it" in done.stderr
    assert passwords.read_text() == "{not json"


def test_airflow_keeps_the_password_it_finds(tmp_path):
    """SimpleAuthManager (what the api-server runs) reads the file as written and does not
    replace the password, nor widen the file's mode."""
    passwords = tmp_path / "passwords.json"
    assert _auth(passwords).returncode == 0
    password = _stored(passwords)["admin"]
    script = textwrap.dedent(
        """
        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
            SimpleAuthManager,
        )
        manager = SimpleAuthManager()
        manager.init()
        print(SimpleAuthManager.get_passwords()["admin"])
        """
    )
    env = _env(
        AIRFLOW_HOME=str(tmp_path / "home"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == password
    assert _stored(passwords) == {"admin": password}
    assert _mode(passwords) == 0o600


# -- what listens where --------------------------------------------------------------------


def test_component_flags_mean_what_they_say_to_airflow():
    """Airflow's own parser: the api-server binds 127.0.0.1, the scheduler and triggerer
    start no log server (which would listen on every interface)."""
    from airflow.cli import cli_parser

    commands = component_commands("127.0.0.1", 8080)
    assert set(commands) == {"scheduler", "dag-processor", "api-server", "triggerer"}
    parsed = {name: cli_parser.get_parser().parse_args(argv[1:]) for name, argv in commands.items()}
    assert parsed["api-server"].host == "127.0.0.1" and parsed["api-server"].port == 8080
    assert parsed["scheduler"].skip_serve_logs is True
    assert parsed["triggerer"].skip_serve_logs is True


_FAKE_AIRFLOW = """#!{python}
import json, os, sys, time
from pathlib import Path
keys = ("AIRFLOW__API__HOST", "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
record = {{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keys}},
          "pid": os.getpid()}}
Path(os.environ["FAKE_AIRFLOW_RECORDS"], sys.argv[1]).write_text(json.dumps(record))
print(sys.argv[1], "started", flush=True)
time.sleep(120)
"""


@pytest.fixture
def fake_airflow(tmp_path):
    """An `airflow` on PATH that records its argv and settings, then waits."""
    bin_dir, records = tmp_path / "bin", tmp_path / "records"
    bin_dir.mkdir()
    records.mkdir()
    script = bin_dir / "airflow"
    script.write_text(_FAKE_AIRFLOW.format(python=sys.executable))
    script.chmod(0o755)
    env = _env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env["FAKE_AIRFLOW_RECORDS"] = str(records)
    return env, records


def _launch(env: dict[str, str], passwords: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "slmops_airflow.cluster.standalone", "--passwords", str(passwords)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_records(records: Path, count: int = 4) -> dict[str, dict]:
    deadline = time.monotonic() + 60
    while len(list(records.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the last file written completely
    return {path.name: json.loads(path.read_text()) for path in records.iterdir()}


def test_launcher_binds_loopback_and_stops_every_component(tmp_path, fake_airflow):
    env, records = fake_airflow
    passwords = tmp_path / "passwords.json"
    launcher = _launch(env, passwords)
    started = _wait_for_records(records)
    components = psutil.Process(launcher.pid).children()
    assert len(components) == 4
    launcher.send_signal(signal.SIGTERM)
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, out
    _, alive = psutil.wait_procs(components, timeout=10)
    assert not alive, "a component outlived the launcher"

    assert set(started) == {"scheduler", "dag-processor", "api-server", "triggerer"}
    assert started["api-server"]["argv"] == ["api-server", "--host", "127.0.0.1", "--port", "8080"]
    assert "--skip-serve-logs" in started["scheduler"]["argv"]
    assert "--skip-serve-logs" in started["triggerer"]["argv"]
    for name, record in started.items():
        assert record["env"] == {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        }, name
    password = _stored(passwords)["admin"]
    assert out.count(password) == 1 and _mode(passwords) == 0o600
    assert "api-server    | api-server started" in out

    # The next start keeps the password and does not show it.
    for path in records.iterdir():
        path.unlink()
    again = _launch(env, passwords)
    _wait_for_records(records)
    again.send_signal(signal.SIGINT)
    out, _ = again.communicate(timeout=60)
    assert password not in out and _stored(passwords) == {"admin": password}


def test_launcher_exposes_only_when_asked(tmp_path, fake_airflow):
    env, records = fake_airflow
    env = {**env, "SLMOPS_BIND_ADDRESS": "0.0.0.0", "SLMOPS_ADMIN_PASSWORD": "chosen"}
    launcher = _launch(env, tmp_path / "passwords.json")
    started = _wait_for_records(records)
    launcher.send_signal(signal.SIGTERM)
    launcher.communicate(timeout=60)
    assert started["api-server"]["argv"][:3] == ["api-server", "--host", "0.0.0.0"]
    # Tasks still reach the Task Execution API over loopback.
    url = started["scheduler"]["env"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert url == "http://127.0.0.1:8080/execution/"
    assert _stored(tmp_path / "passwords.json") == {"admin": "chosen"}


def test_a_component_that_exits_stops_the_others(tmp_path, fake_airflow):
    env, records = fake_airflow
    bin_dir = Path(env["PATH"].split(os.pathsep)[0])
    script = bin_dir / "airflow"
    # The dag-processor fails at once, as a broken install would.
    script.write_text(
        script.read_text().replace(
            'print(sys.argv[1], "started", flush=True)',
            'print(sys.argv[1], "started", flush=True)\n'
            'sys.exit(3) if sys.argv[1] == "dag-processor" else None',
        )
    )
    launcher = _launch(env, tmp_path / "passwords.json")
    out, _ = launcher.communicate(timeout=90)
    assert launcher.returncode == 3, out
    assert "dag-processor exited with 3: stopping the others" in out
    for record in (json.loads(path.read_text()) for path in records.iterdir()):
        assert not psutil.pid_exists(record["pid"]) or (
            psutil.Process(record["pid"]).status() == psutil.STATUS_ZOMBIE
        ), record["argv"]


def test_make_airflow_runs_the_launcher_without_a_default_password():
    """What `make airflow` and `make demo` would run (make -n: printed, not run)."""
    printed = {
        target: subprocess.run(
            ["make", "-n", "--no-print-directory", target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for target in ("airflow", "demo")
    }
    for target, done in printed.items():
        assert done.returncode == 0, done.stderr
        assert '{"admin": "admin"}' not in done.stdout, target
    airflow = printed["airflow"].stdout
    assert "-m slmops_airflow.cluster run -- " in airflow
    assert "-m slmops_airflow.cluster.standalone" in airflow
    assert "--passwords /" in airflow and "/.airflow/passwords.json" in airflow
    assert "airflow standalone" not in airflow
