"""Shared fixtures. Tests never reach a hub: offline mode is forced for the whole session."""

from __future__ import annotations

import os

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
