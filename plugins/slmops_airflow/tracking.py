"""Where the Airflow side sends tracking: an Airflow connection, when there is one.

``$SLMOPS_MLFLOW_CONN_ID`` (default ``mlflow_default``) names an HTTP connection to an
MLflow server: host (with or without a scheme), port, and schema ``https`` for TLS. With
no such connection, the library decides (``$MLFLOW_TRACKING_URI``, else the embedded
store under the artifacts root).
"""

from __future__ import annotations

import os

CONN_ID_ENV = "SLMOPS_MLFLOW_CONN_ID"
DEFAULT_CONN_ID = "mlflow_default"


def tracking_uri() -> str | None:
    from airflow.sdk import BaseHook

    conn_id = os.environ.get(CONN_ID_ENV) or DEFAULT_CONN_ID
    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception:  # no such connection (the usual case): the library's default
        return None
    return connection_uri(connection.host, connection.port, connection.schema)


def connection_uri(host: str | None, port: int | None, schema: str | None) -> str | None:
    if not host:
        return None
    if "://" not in host:
        host = f"{'https' if schema == 'https' else 'http'}://{host}"
    return f"{host.rstrip('/')}:{port}" if port else host.rstrip("/")
