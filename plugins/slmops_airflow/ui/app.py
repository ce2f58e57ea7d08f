"""The slmops pages, a FastAPI app the api-server mounts at /slmops.

    /                                   runs (newest first) and published models
    /models                             every published version, latest and champion history
    /runs/DAG_ID/RUN_ID                 the run's report (or its state while it runs)
    /runs/DAG_ID/RUN_ID/PATH            a file of the run folder (the report's links, plots)
    /api/runs, /api/models              the same rows as JSON

Every route needs the UI's login (its JWT cookie, or a bearer token) and read access to
the DAG of what it shows; an anonymous browser is sent to the login page, anything else
gets 401. Pages read the files the runs wrote (``slmops.pipeline.catalog``); nothing is
computed here and no model library is imported.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmops.errors import ConfigError
from slmops.layout import REPORT_DIR, REPORT_HTML
from slmops.pipeline import catalog
from slmops_airflow.roots import ARTIFACTS_VARIABLE
from slmops_airflow.ui.links import PREFIX, run_path
from slmops_airflow.ui.pages import render

# Served files are the runs' own pages: no scripts, images inline or from the run folder,
# framed only by the Airflow UI itself.
_FILE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; "
    "style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_TEXT_SUFFIXES = {".md": "text/markdown", ".jsonl": "application/x-ndjson"}

log = logging.getLogger(__name__)
app = FastAPI(title="slmops", docs_url=None, redoc_url=None, openapi_url=None)
ReadsRun = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
Limit = Annotated[int, Query(ge=1, le=1000, description="newest runs shown")]


def artifacts_root() -> Path:
    """Where the runs are: $SLMOPS_ARTIFACTS_ROOT, narrowed by the Variable
    ``slmops_artifacts_root`` when set (the same rule as the prepare task's: a Variable
    outside the deployment's root is not followed; the deployment's root is shown)."""
    from airflow.models.variable import Variable

    from slmops.pipeline import locations

    try:
        configured = Variable.get(ARTIFACTS_VARIABLE, default_var=None)
    except Exception:  # no metadata DB reachable: the environment still answers
        configured = None
    try:
        return locations.narrowed_artifacts_root(
            configured, f"Airflow Variable {ARTIFACTS_VARIABLE}"
        )
    except ConfigError as exc:
        log.warning("slmops UI: %s; showing %s", exc, locations.artifacts_root())
        return locations.artifacts_root()


def readable_dags(user) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


@app.exception_handler(StarletteHTTPException)
async def _login_first(request: Request, exc: StarletteHTTPException) -> Response:
    """A browser without a session goes to the login page and comes back; API clients
    get the status and the reason."""
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(login, status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@app.get("/", response_class=HTMLResponse)
def runs_page(user: GetUserDep, limit: Limit = 100) -> HTMLResponse:
    allowed = readable_dags(user)
    root = artifacts_root()
    rows = catalog.runs(root, dag_ids=allowed, limit=limit)
    models = _readable_models(catalog.models(root), allowed)
    return HTMLResponse(
        render("runs.html", runs=rows, models=models, root=str(root), run_url=run_path)
    )


@app.get("/models", response_class=HTMLResponse)
def models_page(user: GetUserDep) -> HTMLResponse:
    models = _readable_models(catalog.models(artifacts_root()), readable_dags(user))
    return HTMLResponse(render("models.html", models=models, run_url=run_path))


@app.get("/models/{name}/versions/{version}", response_model=None)
def model_version(user: GetUserDep, name: str, version: str) -> Response:
    """Where a run report's "Published" link lands in the UI (the report links the
    version folder, which resolves here): that version's row on the models page."""
    anchor = quote(f"{name}-{version}", safe="+:@")  # the row's id, as a fragment
    return RedirectResponse(f"{PREFIX}/models#{anchor}", 303)


@app.get("/api/runs")
def runs_json(user: GetUserDep, limit: Limit = 100) -> list[dict]:
    return catalog.runs(artifacts_root(), dag_ids=readable_dags(user), limit=limit)


@app.get("/api/models")
def models_json(user: GetUserDep) -> list[dict]:
    return _readable_models(catalog.models(artifacts_root()), readable_dags(user))


@app.get("/runs/{dag_id}/{run_id}", dependencies=[ReadsRun], response_model=None)
def run_page(dag_id: str, run_id: str) -> Response:
    """The run's report once one is written; until then, what the run has so far."""
    from slmops.pipeline import locations

    folder = locations.run_dir(artifacts_root(), dag_id, run_id)
    if (folder / REPORT_DIR / REPORT_HTML).is_file():
        return RedirectResponse(f"{run_path(dag_id, run_id)}/{REPORT_DIR}/{REPORT_HTML}", 303)
    row = catalog.run_row(folder)
    page = render("run_pending.html", run=row, dag_id=dag_id, run_id=run_id, run_url=run_path)
    return HTMLResponse(page, status_code=200 if row else 404)


@app.get("/runs/{dag_id}/{run_id}/{path:path}", dependencies=[ReadsRun], response_model=None)
def run_file(dag_id: str, run_id: str, path: str) -> Response:
    try:
        file = catalog.run_file(artifacts_root(), dag_id, run_id, path)
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    except FileNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    media = _TEXT_SUFFIXES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
    return FileResponse(file, media_type=media or "application/octet-stream", headers=_FILE_HEADERS)


def _readable_models(models: list[dict], allowed: set[str]) -> list[dict]:
    """Each model with only the versions published by DAGs the viewer may read."""
    readable = []
    for model in models:
        versions = [v for v in model["versions"] if v["dag_id"] in allowed]
        if versions:
            readable.append({**model, "versions": versions})
    return readable


_ICON = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' "
    "stroke='currentColor' stroke-width='2'><path d='M4 19h16M6 16l4-6 4 3 4-7'/></svg>"
)


@app.get("/static/icon.svg", include_in_schema=False)
def icon(user: GetUserDep) -> Response:
    return Response(_ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})
