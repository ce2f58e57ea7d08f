"""SlmopsUiPlugin: the Airflow 3 plugin that mounts the slmops pages (no Flask/AppBuilder)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from slmops_airflow.ui.app import app
from slmops_airflow.ui.links import PREFIX


class SlmopsUiPlugin(AirflowPlugin):
    """``Fine-tuning`` in the navigation (runs and published models) and a ``Run report``
    tab on every DAG run; both are pages of the FastAPI app at /slmops inside the UI."""

    name = "slmops"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "slmops"}]
    external_views = [
        {
            "name": "Fine-tuning",
            "href": f"{PREFIX}/",
            "destination": "nav",
            "url_route": "fine-tuning",
            "nav_top_level": True,
            "icon": f"{PREFIX}/static/icon.svg",
        },
        {
            "name": "Run report",
            "href": f"{PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "slmops-run-report",
        },
    ]
