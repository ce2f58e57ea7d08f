"""The slmops UI plugin loads in the api-server without any model library, and its
pages render from the run folders alone."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "onnxruntime", "great_expectations", "mlflow")

_PROBE = """
import json, sys
import slmops_ui  # what Airflow's plugin loader imports from the plugins folder
from slmops_airflow.ui.plugin import SlmopsUiPlugin
views = [view["name"] for view in SlmopsUiPlugin.external_views]
apps = [app["url_prefix"] for app in SlmopsUiPlugin.fastapi_apps]
heavy = [name for name in sys.argv[1:] if name in sys.modules]
print(json.dumps({"views": views, "apps": apps, "heavy": heavy}))
"""


def test_the_plugin_imports_no_model_library():
    from slmops_airflow.ui.pages import TEMPLATES

    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, *HEAVY],
        capture_output=True,
        text=True,
        check=True,
        cwd=TEMPLATES.parents[2],  # plugins/, where slmops_ui.py lives
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result == {"views": ["Fine-tuning", "Run report"], "apps": ["/slmops"], "heavy": []}


def test_the_pages_render_escaped(tmp_path):
    from slmops_airflow.ui.links import run_path
    from slmops_airflow.ui.pages import render

    run = {
        "dag_id": "slm_finetune",
        "run_id": "manual__1",
        "model_name": "<b>tones</b>",
        "planned_at": 0,
        "outcome": "failed",
        "approval": None,
        "champion": None,
        "evaluation": None,
        "targets": {},
        "published": None,
        "alerts": [{"message": "gate <script>x</script> failed", "at": "T"}],
        "alert_count": 4,
    }
    page = render("runs.html", runs=[run], models=[], root=str(tmp_path), run_url=run_path)
    assert "&lt;b&gt;tones&lt;/b&gt;" in page and "<script>" not in page
    assert 'href="/slmops/runs/slm_finetune/manual__1"' in page
    assert "and 3 earlier" in page and "1970-01-01 00:00 UTC" in page


def test_the_pages_follow_the_variable_only_inside_the_deployments_root(tmp_path, monkeypatch):
    """Anyone who may edit Variables must not make the pages serve files from `/`."""
    from slmops_airflow.ui.app import artifacts_root

    deployment = tmp_path / "artifacts"
    (deployment / "team").mkdir(parents=True)
    monkeypatch.setenv("SLMOPS_ARTIFACTS_ROOT", str(deployment))
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_ARTIFACTS_ROOT", "/")
    assert artifacts_root() == deployment.resolve()
    monkeypatch.setenv("AIRFLOW_VAR_SLMOPS_ARTIFACTS_ROOT", str(deployment / "team"))
    assert artifacts_root() == (deployment / "team").resolve()
