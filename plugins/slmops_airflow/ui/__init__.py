"""The slmops pages in the Airflow UI: a FastAPI app mounted on the api-server at /slmops
(``app``), shown in the UI's navigation and on each DAG run by ``plugin.SlmopsUiPlugin``.

The pages only read what the runs wrote under the artifacts root
(``slmops.pipeline.catalog``); they require the UI's login and the viewer's read access to
each DAG.
"""
