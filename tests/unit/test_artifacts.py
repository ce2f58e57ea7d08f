import json

import pytest

from slmops.artifacts import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
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
