"""The real bundled base model: GGUF -> Hugging Face folder, idempotence, recovery, quality."""

import os
import subprocess
import sys
import time

import pytest

from slmops.inference import chat_prompt, greedy_complete
from slmops.model_store import pull, verify
from slmops.models import load_causal_lm, load_tokenizer, resolve

pytestmark = pytest.mark.integration
ALIAS = "smollm2-135m-instruct"
CAPITAL_QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory):
    """A private store, pulled once with the real converter (about 20 s)."""
    home = tmp_path_factory.mktemp("home")
    result = pull(ALIAS, home=home)
    assert result.action == "created"
    return home


def test_pulled_folder_is_a_standard_hf_model(fresh_home):
    folder = fresh_home / "models" / ALIAS
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert verify(folder, full=True) == []
    model = load_causal_lm(str(folder))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert not hasattr(model.config, "quantization_config")


def test_second_pull_is_a_fast_no_op(fresh_home):
    weights = fresh_home / "models" / ALIAS / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    assert pull(ALIAS, home=fresh_home).action == "present"
    assert time.perf_counter() - started < 10  # no conversion (that takes ~20 s)
    assert weights.stat().st_mtime_ns == before


def test_corrupt_cache_is_remade_on_resolve(fresh_home):
    weights = fresh_home / "models" / ALIAS / "model.safetensors"
    full_size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(1024)
    resolved = resolve(ALIAS, home=fresh_home)
    assert resolved.source == "bundled"
    assert weights.stat().st_size == full_size
    assert verify(resolved.path, full=True) == []


def test_greedy_chat_answer_says_paris():
    resolved = resolve(ALIAS)  # the store `make setup` filled
    tokenizer = load_tokenizer(resolved)
    model = load_causal_lm(resolved)
    (answer,) = greedy_complete(
        model, tokenizer, [chat_prompt(tokenizer, CAPITAL_QUESTION)], max_new_tokens=24
    )
    assert "Paris" in answer


def test_cli_pull_quiet_and_generate():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    pulled = subprocess.run(
        [sys.executable, "-m", "slmops", "models", "pull", ALIAS, "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert pulled.stdout == "" and pulled.stderr == ""
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "slmops",
            "generate",
            "-m",
            ALIAS,
            "--prompt",
            CAPITAL_QUESTION,
            "--max_new_tokens",
            "24",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "Paris" in generated.stdout
