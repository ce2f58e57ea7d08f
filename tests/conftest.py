"""Shared fixtures. Tests never reach a hub: offline mode is forced for the whole session."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from slmops.gc_scope import collect_less_often

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist each worker gets its share of the cores (inherited by the processes
# a test starts): N workers with a thread per core each would oversubscribe the CPU, and
# OpenMP threads spin while they wait for each other.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))
# Test processes are batch jobs as the slmops command is: fewer young-generation
# collections while they import torch, transformers and Airflow and load models.
collect_less_often()
# Airflow, once imported, reads its home and settings: a private one per test session,
# so tests never touch ~/airflow or a developer's database.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="slmops-test-airflow-")
atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")  # as make and compose
# MLflow tracking is on by default; each store costs seconds to create, so tests that are
# not about tracking run without it (tests/*/test_tracking* and the tracked DAG runs
# turn it on for themselves), and no test ever reads a developer's $MLFLOW_TRACKING_URI.
os.environ["SLMOPS_TRACKING"] = "off"
os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's ``--dist loadfile`` (``make test``), with the cluster tier as one
    unit: a test file stays on one worker, so its module fixtures (an Airflow, a browser)
    start once, and every cluster test shares one worker, so one cluster starts. (xdist's
    own ``loadgroup`` marks do not group under pytest 9: it renames node ids, which pytest
    9 no longer lets it do.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    # Files go out in collection order (see pytest_collection_modifyitems), not xdist's
    # default of the files with the most tests first, which sends the few-test, minute-long
    # end-to-end files last and leaves one worker idle while the other finishes them.
    config.option.loadscopereorder = False

    class TierAwareFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/cluster" if path.startswith("tests/cluster/") else path

    return TierAwareFileScheduling(config, log)


# The tiers whose files take minutes, slowest first; the rest (seconds per file) follow and
# fill the workers' last minutes evenly.
SLOW_TIERS_FIRST = (
    "tests/cluster/",
    "tests/e2e/",
    "tests/integration/",
    "tests/reliability/",
    "tests/unit/export/",
)


def _tier_rank(nodeid: str) -> int:
    return next(
        (rank for rank, tier in enumerate(SLOW_TIERS_FIRST) if nodeid.startswith(tier)),
        len(SLOW_TIERS_FIRST),
    )


def pytest_collection_modifyitems(config, items):
    """Slow tiers first (a stable sort: each file keeps its own order)."""
    items.sort(key=lambda item: _tier_rank(item.nodeid))


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


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The byte-level BPE tokenizer of the tiny model, with a ChatML chat template."""
    from slmops.testing import build_tokenizer

    return build_tokenizer()


@pytest.fixture
def write_jsonl(tmp_path):
    """Write rows as a JSONL file under tmp_path; returns its path."""
    import json

    def write(rows, name="data.jsonl"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    return write


@pytest.fixture
def finetune_config(tmp_path, tiny_model_dir, write_jsonl):
    """A factory of short fine-tuning configs on the tiny model and 120 tone rows."""
    from slmops.testing import TONE_TEMPLATE, tone_rows
    from slmops.training.config import FinetuneConfig

    data = write_jsonl(tone_rows(120), "tones.jsonl")

    def make(**overrides):
        settings = {
            "model_name_or_path": str(tiny_model_dir),
            "data_files": [str(data)],
            "text_template": TONE_TEMPLATE,
            "label_field": "tone",
            "output_path": tmp_path / "run",
            "max_steps": 6,
            "eval_steps": 3,
            "logging_steps": 1,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            **overrides,
        }
        return FinetuneConfig.model_validate(settings)

    return make


def _trained_run(tmp_path_factory, tiny_model_dir, name, rows, **settings):
    """A finished run of the tiny model on ``rows`` (tone template, a quarter held out)."""
    from slmops.testing import TONE_TEMPLATE
    from slmops.training.config import FinetuneConfig
    from slmops.training.run import run as train

    folder = tmp_path_factory.mktemp(name)
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = FinetuneConfig.model_validate(
        {
            "model_name_or_path": str(tiny_model_dir),
            "data_files": [str(data)],
            "text_template": TONE_TEMPLATE,
            "label_field": "tone",
            "output_path": folder / "run",
            "eval_fraction": 0.25,
            "per_device_train_batch_size": 4,
            "warmup_ratio": 0.0,
            **settings,
        }
    )
    return train(config).training_dir


@pytest.fixture(scope="session")
def tone_run(tmp_path_factory, tiny_model_dir):
    """Full fine-tuning that learns the tones (held-out accuracy ~0.96)."""
    from slmops.testing import tone_rows

    return _trained_run(
        tmp_path_factory,
        tiny_model_dir,
        "tone",
        tone_rows(96),
        method="full",
        max_steps=60,
        eval_steps=20,
        logging_steps=20,
        learning_rate=1e-2,
    )


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory, tiny_model_dir):
    """Few rows with labels dealt at random, many steps, a high learning rate: the model
    can only memorise its 18 training rows, so it overfits."""
    from slmops.testing import shuffled_tone_rows

    return _trained_run(
        tmp_path_factory,
        tiny_model_dir,
        "overfit",
        shuffled_tone_rows(24),
        method="full",
        max_steps=120,
        eval_steps=10,
        logging_steps=10,
        learning_rate=1e-2,
    )


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tiny_model_dir):
    """Six LoRA steps: an adapter/ and a merged/ model that differ a little from the base."""
    from slmops.testing import tone_rows

    return _trained_run(
        tmp_path_factory,
        tiny_model_dir,
        "lora",
        tone_rows(48),
        max_steps=6,
        eval_steps=3,
        logging_steps=1,
        learning_rate=1e-2,
    )


@pytest.fixture(scope="session")
def peaked_model_dir(tmp_path_factory):
    """A tiny Llama with peaked logits (initializer_range 0.3), which LoRA can steer."""
    from slmops.testing import build_tiny_llama

    return build_tiny_llama(
        tmp_path_factory.mktemp("peaked") / "peaked-llama", initializer_range=0.3
    )


@pytest.fixture(scope="session")
def two_adapters(tmp_path_factory, peaked_model_dir):
    """Two LoRA adapters of one base on the same phrases: "label" answers the tone,
    "explain" answers a sentence ("It sounds angry, because ...")."""
    from slmops.testing import tone_rows

    rows = tone_rows(48)
    explained = [
        {"phrase": row["phrase"], "tone": f"It sounds {row['tone']}, because of how it ends."}
        for row in rows
    ]
    lora = {
        "max_steps": 120,
        "eval_steps": 120,
        "logging_steps": 40,
        "learning_rate": 2e-2,
        "per_device_train_batch_size": 8,
        "target_modules": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    }
    label_run = _trained_run(tmp_path_factory, peaked_model_dir, "label", rows, **lora)
    lora["label_field"] = None
    explain_run = _trained_run(tmp_path_factory, peaked_model_dir, "explain", explained, **lora)
    return {"label": label_run / "adapter", "explain": explain_run / "adapter"}


@pytest.fixture(scope="session")
def part_of_each_group_adapter(tmp_path_factory, peaked_model_dir):
    """A LoRA adapter of the peaked model on q, v and up only: part of the q/k/v and the
    gate/up groups."""
    from slmops.testing import tone_rows

    run = _trained_run(
        tmp_path_factory, peaked_model_dir, "partial", tone_rows(48), max_steps=40,
        eval_steps=40, logging_steps=20, learning_rate=2e-2, per_device_train_batch_size=8,
        target_modules="q_proj,v_proj,up_proj",
    )  # fmt: skip
    return run / "adapter"
