import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from slmops.artifacts import (
    STALE_AFTER_S,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    ensure_free_space,
    exclusive_lock,
    file_sha256,
    models_dir,
    remove_stale_temporaries,
    slmops_home,
)


def test_home_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMOPS_HOME", str(tmp_path / "h"))
    assert slmops_home() == (tmp_path / "h").resolve()
    assert models_dir() == (tmp_path / "h" / "models").resolve()
    monkeypatch.delenv("SLMOPS_HOME")
    # From the source checkout the default is .slmops/ in the project.
    assert slmops_home().name == ".slmops"
    assert (slmops_home().parent / "pyproject.toml").is_file()


def test_atomic_directory_replaces_only_on_success(tmp_path):
    final = tmp_path / "model"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("one")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "one"

    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("killed mid-way")
    assert (final / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    with atomic_directory(final) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_write_text_and_json(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    atomic_write_text(target, "replaced")
    assert target.read_text() == "replaced"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_file_sha256_known_value(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert file_sha256(path) == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_remove_stale_temporaries_touches_only_its_target(tmp_path):
    (tmp_path / ".model.tmp-1234abcd").mkdir()
    (tmp_path / ".model.old-1234abcd").mkdir()
    (tmp_path / ".other.tmp-1234abcd").mkdir()
    (tmp_path / "model").mkdir()
    remove_stale_temporaries(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1234abcd", "model"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has it now (pids are not reused this soon)


def test_stale_temporaries_are_told_from_live_ones(tmp_path):
    """A killed writer's leftover goes, a live writer's stays (it used to be removed too),
    another machine's goes only once it is older than the limit."""
    host = socket.gethostname()
    dead = tmp_path / f".model.tmp-0000abcd-{_dead_pid()}-{host}"
    live = tmp_path / f".model.tmp-1111abcd-{os.getpid()}-{host}"
    parent_live = tmp_path / f".model.tmp-2222abcd-{os.getppid()}-{host}"
    remote_new = tmp_path / ".model.tmp-3333abcd-12-other-host.example"
    remote_old = tmp_path / ".model.tmp-4444abcd-12-other-host.example"
    for folder in (dead, live, parent_live, remote_new, remote_old):
        folder.mkdir()
    os.utime(remote_old, (time.time() - 2 * STALE_AFTER_S,) * 2)
    (tmp_path / "model").mkdir()
    removed = remove_stale_temporaries(tmp_path / "model")
    assert sorted(p.name for p in removed) == sorted([dead.name, remote_old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, parent_live.name, remote_new.name, "model"]
    )


def test_a_swap_cut_between_its_renames_is_undone(tmp_path):
    """Killed after moving the old folder aside and before renaming the new one in: the
    old folder is put back (the reader sees the old version, never none)."""
    old = tmp_path / f".model.old-0000abcd-{_dead_pid()}-{socket.gethostname()}"
    old.mkdir()
    (old / "a.txt").write_text("old")
    (tmp_path / f".model.tmp-0000abcd-{_dead_pid()}-{socket.gethostname()}").mkdir()
    remove_stale_temporaries(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model/a.txt").read_text() == "old"


def test_writes_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    """The real os.fsync runs; the spy records which files and folders it was given."""
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_json(tmp_path / "out.json", {"a": 1})
    assert synced[0].startswith(str(tmp_path / ".out.json.tmp-")) and synced[1] == str(tmp_path)
    synced.clear()
    with atomic_directory(tmp_path / "model") as folder:
        (folder / "sub").mkdir()
        (folder / "sub/w.bin").write_bytes(b"w")
    assert any(path.endswith("/sub/w.bin") for path in synced)
    assert synced[-1] == str(tmp_path)  # the rename itself, last


def test_free_space_is_checked_with_a_clear_error(tmp_path):
    ensure_free_space(tmp_path, 1, what="a tiny write")
    with pytest.raises(
        OSError, match=r"not enough disk space in .*new/folder for an export"
    ) as error:
        ensure_free_space(tmp_path / "new/folder", 10**18, what="an export")
    assert error.value.errno == errno.ENOSPC and "1000000000000000000 bytes" in str(error.value)
    assert not (tmp_path / "new").exists()


def test_exclusive_lock_is_bounded_and_freed_by_a_dead_holder(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    busy = pytest.raises(TimeoutError, match=r"writing x: another process has held .*x.lock")
    with busy, exclusive_lock(lock, timeout_s=0.2, what="writing x"):
        pass
    assert time.monotonic() - started < 2
    holder.kill()  # SIGKILL: the kernel drops its lock
    holder.wait()
    with exclusive_lock(lock, timeout_s=2, what="writing x"):
        pass
