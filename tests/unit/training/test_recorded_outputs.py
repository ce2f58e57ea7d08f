"""A training run's recorded outputs (training_metrics.json "outputs") stay inside the run
folder: evaluation, export and a reused run load what they name, so an edited record must
not make them load a folder elsewhere."""

from __future__ import annotations

import pytest

from slmops.errors import ModelError
from slmops.layout import ADAPTER, MERGED
from slmops.training.folder import recorded_output


def test_outputs_inside_the_run_are_returned(tmp_path):
    (tmp_path / "adapter").mkdir()
    history = {"outputs": {ADAPTER: "adapter"}}
    assert recorded_output(tmp_path, history, ADAPTER) == tmp_path / "adapter"
    assert recorded_output(tmp_path, history, MERGED) is None
    assert recorded_output(tmp_path, None, ADAPTER) is None


@pytest.mark.parametrize("relative", ["../elsewhere", "adapter/../../x", "/etc"])
def test_outputs_pointing_outside_the_run_are_refused(tmp_path, relative):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ModelError, match="training_metrics.json.*points outside"):
        recorded_output(run, {"outputs": {ADAPTER: relative}}, ADAPTER)


def test_a_link_out_of_the_run_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "outside").mkdir()
    (run / "adapter").symlink_to(tmp_path / "outside")
    with pytest.raises(ModelError, match="points outside"):
        recorded_output(run, {"outputs": {ADAPTER: "adapter"}}, ADAPTER)
