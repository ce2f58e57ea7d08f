"""Shared fixtures. Tests never reach a hub: offline mode is forced for the whole session."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama + BPE tokenizer saved as a Hugging Face folder."""
    from slmops.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def slmops_home(tmp_path, monkeypatch):
    """An empty, private SLMOPS_HOME for one test."""
    home = tmp_path / "slmops-home"
    monkeypatch.setenv("SLMOPS_HOME", str(home))
    return home


@pytest.fixture
def tiny_converter(monkeypatch, tiny_model_dir):
    """Replace the 20 s GGUF conversion by a copy of the tiny model; counts the calls."""
    calls = []

    def fake_convert(gguf_path, out_dir):
        calls.append(gguf_path)
        for item in tiny_model_dir.iterdir():
            shutil.copy2(item, out_dir / item.name)

    from slmops import model_store

    monkeypatch.setattr(model_store, "convert_gguf", fake_convert)
    return calls
