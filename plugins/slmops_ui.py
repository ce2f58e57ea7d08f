"""Registers the slmops UI plugin with Airflow (see slmops_airflow.ui).

Airflow imports each .py file of the plugins folder as a module and collects the
AirflowPlugin classes it holds; the operators' package beside it is ignored
(.airflowignore), so this file is the one entry point.
"""

from slmops_airflow.ui.plugin import SlmopsUiPlugin

__all__ = ["SlmopsUiPlugin"]
