"""A tiny pipeline run (trained, gated, exported, reported, published) with tracking on."""

from __future__ import annotations

import pytest
from tracked_runs import RUN_ID


@pytest.fixture(scope="session")
def tracked_root(tmp_path_factory, tiny_model_dir):
    """An artifacts root holding one published run of the tiny model, tracked in the
    embedded MLflow store (about 30 s: 60 training steps and a cpu-fp32 export)."""
    from slmops.pipeline.local_run import RunConfig, run_pipeline
    from slmops.testing import tiny_pipeline_data, tiny_pipeline_params

    base = tmp_path_factory.mktemp("tracked")
    data = tiny_pipeline_data(base / "data", tiny_model_dir)
    config = RunConfig(base, "pipeline", "slm_finetune", tiny_pipeline_params("tiny-tones"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMOPS_TRACKING", "on")
        run_pipeline(config, artifacts_root=base / "artifacts", data_roots=[data], run_id=RUN_ID)
    return base / "artifacts"


@pytest.fixture
def tracking_on(monkeypatch):
    monkeypatch.setenv("SLMOPS_TRACKING", "on")
