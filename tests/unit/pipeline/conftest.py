"""The ``run_dir`` fixture: a finished run folder (run_folder.finished_run)."""

from __future__ import annotations

import pytest
from run_folder import finished_run


@pytest.fixture
def run_dir(tmp_path):
    return finished_run(tmp_path)
