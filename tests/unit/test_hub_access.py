"""Hub access: strict hub ids, revisions pinned and loaded exactly, and transient hub
failures (a real local server answering 503 / 429) raised as retryable errors."""

from __future__ import annotations

import http.server
import os
import threading

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError

from slmops.errors import ModelError, SlmopsError, TransientError
from slmops.models import (
    is_hub_id,
    pin_hub_revision,
    resolve,
    split_revision,
    transient_hub_error,
)

OLD_SHA = "1" * 40
NEW_SHA = "2" * 40


@pytest.mark.parametrize(
    "value, expected",
    [
        ("HuggingFaceTB/SmolLM2-135M", True),
        ("Org_1/n.a_m-e", True),
        ("data/x.jsonl", False),  # a missing data file, not a dataset
        ("org/tones.csv", False),
        ("org/set.parquet", False),
        ("my-model/", False),
        ("a/b/c", False),
        ("-org/name", False),
        ("org/name.", False),
        ("org/na--me", False),
        ("org/na..me", False),
        ("gpt2", False),
        ("org/" + "n" * 97, False),
    ],
)
def test_hub_ids_are_owner_slash_name_as_the_hub_spells_them(value, expected):
    assert is_hub_id(value) is expected


def test_a_pinned_hub_id_splits_into_id_and_revision():
    assert split_revision(f"org/name@{OLD_SHA}") == ("org/name", OLD_SHA)
    assert split_revision("org/name") == ("org/name", None)


def hub_cache(root, repo_id, source_dir, kind="models"):
    """A hub cache as huggingface_hub writes it: blobs, snapshots of links into them, and
    refs/main naming the newest commit. Two commits: OLD_SHA and NEW_SHA (main)."""
    repo = root / f"{kind}--{repo_id.replace('/', '--')}"
    for sha in (OLD_SHA, NEW_SHA):
        snapshot = repo / "snapshots" / sha
        snapshot.mkdir(parents=True)
        for item in source_dir.iterdir():
            blob = repo / "blobs" / f"{sha[:4]}-{item.name}"
            blob.parent.mkdir(exist_ok=True)
            blob.write_bytes(item.read_bytes())
            (snapshot / item.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(NEW_SHA)
    return repo


def test_offline_the_revision_is_pinned_from_the_cache_and_loaded_exactly(
    tmp_path, tiny_model_dir, monkeypatch
):
    repo = hub_cache(tmp_path / "hub", "acme/tiny", tiny_model_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert pin_hub_revision("acme/tiny", repo_type="model") == NEW_SHA
    assert pin_hub_revision("acme/tiny", repo_type="model", revision=OLD_SHA) == OLD_SHA
    # The pinned id loads that commit, not what main names now.
    resolved = resolve(f"acme/tiny@{OLD_SHA}", cache_dir=tmp_path / "hub")
    assert (resolved.source, resolved.path) == ("hub", repo / "snapshots" / OLD_SHA)
    assert resolve("acme/tiny", cache_dir=tmp_path / "hub").path == repo / "snapshots" / NEW_SHA


def test_offline_a_repo_missing_from_the_cache_cannot_be_pinned(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match=r"dataset 'org/tones'.*holds no snapshot.*--repo-type"):
        pin_hub_revision("org/tones", repo_type="dataset")


def test_a_hub_snapshot_whose_link_leaves_the_repo_is_refused(
    tmp_path, tiny_model_dir, monkeypatch
):
    repo = hub_cache(tmp_path / "hub", "acme/tiny", tiny_model_dir)
    (tmp_path / "elsewhere.json").write_text("{}")
    tokenizer = repo / "snapshots" / NEW_SHA / "tokenizer_config.json"
    tokenizer.unlink()
    tokenizer.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ModelError, match="tokenizer_config.json is a link to .*outside"):
        resolve("acme/tiny", cache_dir=tmp_path / "hub")


class _Hub(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):
        type(self).requests += 1
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def hub_server(monkeypatch, tmp_path):
    """A hub endpoint on 127.0.0.1 answering every request with ``status``; online mode."""
    import huggingface_hub.constants as constants

    handler = type("Hub", (_Hub,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [503, 429, 500])
def test_a_busy_hub_is_a_retryable_error_not_a_slmops_error(hub_server, tmp_path, status):
    hub_server.status = status
    logged = []
    with pytest.raises(TransientError) as info:
        resolve("acme/tiny", cache_dir=tmp_path / "empty-cache", log=logged.append)
    assert not isinstance(info.value, SlmopsError)  # operators retry what is not one
    message = str(info.value)
    assert "model 'acme/tiny'" in message and f"HTTP {status}" in message
    assert "will be retried" in message
    assert logged == [message]
    assert hub_server.requests >= 1
    with pytest.raises(TransientError, match=f"dataset 'org/tones'.*HTTP {status}"):
        pin_hub_revision("org/tones", repo_type="dataset")


def test_a_missing_repo_stays_a_clear_error_that_is_not_retried(hub_server, tmp_path):
    hub_server.status = 404
    with pytest.raises(ModelError, match="could not be resolved to a commit"):
        pin_hub_revision("acme/none", repo_type="model")
    with pytest.raises(ModelError, match="could not be reached on the Hugging Face hub"):
        resolve("acme/none", cache_dir=tmp_path / "empty-cache")


def test_a_refused_connection_is_retryable(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    port = server.server_address[1]
    server.server_close()  # nothing listens on the port now
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="ConnectError"):
        pin_hub_revision("acme/tiny", repo_type="model")


def _http_error(status: int) -> HfHubHTTPError:
    request = httpx2.Request("GET", "https://huggingface.co/api/datasets/org/tones")
    response = httpx2.Response(status, request=request)
    return HfHubHTTPError(f"{status} from the hub", response=response)


def test_wrapped_hub_failures_are_classified_by_their_cause(monkeypatch):
    """datasets wraps the hub's error in its own ConnectionError: the cause decides."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    try:
        try:
            raise _http_error(502)
        except HfHubHTTPError as inner:
            raise ValueError("Couldn't reach 'org/tones' on the Hub") from inner
    except ValueError as outer:
        assert "HTTP 502" in str(transient_hub_error(outer, "dataset 'org/tones'"))
    assert transient_hub_error(_http_error(401), "x") is None
    assert transient_hub_error(_http_error(404), "x") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: a retry changes nothing
    assert transient_hub_error(_http_error(503), "x") is None


def test_a_hub_dataset_that_fails_transiently_is_retryable(monkeypatch):
    import datasets

    from slmops.data.loading import load_hub_splits

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")

    def busy_hub(*args, **kwargs):  # datasets retries 5x over 23 s before this; skip that
        raise ConnectionError("Couldn't reach 'org/tones' on the Hub") from _http_error(503)

    monkeypatch.setattr(datasets, "load_dataset", busy_hub)
    logged = []
    with pytest.raises(TransientError, match="dataset 'org/tones'.*HTTP 503.*retried"):
        load_hub_splits("org/tones", None, log=logged.append)
    assert "will be retried" in logged[-1]


def test_a_hub_metric_that_fails_transiently_is_retryable(monkeypatch):
    import evaluate

    from slmops.evaluation.metrics import load_metric

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def busy_hub(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'acme/metric' on the Hub") from _http_error(429)

    monkeypatch.setattr(evaluate, "load", busy_hub)
    with pytest.raises(TransientError, match="metric 'acme/busy-metric'.*HTTP 429.*retried"):
        load_metric("acme/busy-metric")


def test_a_busy_hub_at_prepare_is_retryable_and_writes_no_plan(hub_server, tmp_path, monkeypatch):
    from slmops.pipeline.params import DEMO_PARAMS
    from slmops.pipeline.plan import prepare

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tones.jsonl").write_text('{"phrase": "hi", "tone": "joyful"}\n')
    monkeypatch.setenv("SLMOPS_ALLOW_HUB", "1")
    with pytest.raises(TransientError, match="model 'acme/tiny'.*HTTP 503"):
        prepare(
            {**DEMO_PARAMS, "data_files": ["tones.jsonl"], "model_name_or_path": "acme/tiny"},
            dag_id="slm_finetune",
            run_id="manual__1",
            artifacts_root=tmp_path / "artifacts",
            data_roots=[tmp_path / "data"],
        )
    assert not (tmp_path / "artifacts").exists()
