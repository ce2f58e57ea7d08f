"""A runtime setting (an Airflow Variable) may narrow the deployment's roots, never widen
them: slmops.pipeline.locations.narrowed_*."""

from __future__ import annotations

import os

import pytest

from slmops.errors import ConfigError
from slmops.pipeline import locations

SETTING = "Airflow Variable slmops_data_roots"


def test_nothing_given_keeps_the_deployments_roots(tmp_path):
    assert locations.narrowed_roots(None, [tmp_path], SETTING) == [tmp_path]
    assert locations.narrowed_roots(" : ", [tmp_path], SETTING) == [tmp_path]


def test_folders_inside_a_deployment_root_narrow_it(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    value = f"{first}{os.pathsep}{second}/x/.."
    assert locations.narrowed_roots(value, [tmp_path], SETTING) == [first, second]


@pytest.mark.parametrize("value", ["/", "{root}/..", "relative", "{root}/link-out"])
def test_anything_outside_is_refused_naming_the_setting_value_and_roots(tmp_path, value):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link-out").symlink_to("/etc")  # a symlink inside that points outside
    value = value.format(root=root)
    with pytest.raises(ConfigError) as refused:
        locations.narrowed_roots(value, [root], SETTING)
    message = str(refused.value)
    assert message.startswith(f"{SETTING} = {value!r}: {value} is not a folder inside")
    assert f"the deployment's roots ({root})" in message


def test_the_artifacts_root_narrows_to_one_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(locations.ARTIFACTS_ENV, str(tmp_path))
    assert locations.narrowed_artifacts_root(None, "v") == tmp_path.resolve()
    assert locations.narrowed_artifacts_root(str(tmp_path / "team"), "v") == tmp_path / "team"
    with pytest.raises(ConfigError, match="name one folder, not 2"):
        locations.narrowed_artifacts_root(f"{tmp_path}/a{os.pathsep}{tmp_path}/b", "v")
    with pytest.raises(ConfigError, match="is not a folder inside"):
        locations.narrowed_artifacts_root("/var", "v")
