"""One DAG per pipeline config in include/configs/pipelines/ (slmops.pipeline.configs).

A config that fails to load becomes a paused DAG of its own (same id, tag broken-config)
whose page names the file and the field; the other configs are unaffected. Set
$SLMOPS_PIPELINES_DIR to read the configs from another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule

from slmops.pipeline.configs.pipelines import (
    PIPELINES_DIR,
    PipelineSpec,
    load_pipelines,
    stem_dag_id,
)
from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
from slmops.pipeline.publish import data_asset_uri
from slmops_airflow.alerts import run_failure_alert
from slmops_airflow.broken_config import broken_config_dag
from slmops_airflow.form import trigger_form
from slmops_airflow.pipeline import DEFAULT_ARGS, cron_timetable, finetune_pipeline


def _schedule(spec: PipelineSpec):
    timetable = cron_timetable(spec.schedule) if spec.schedule else None
    if not spec.on_data_change:
        return timetable
    assets = [Asset(data_asset_uri(name)) for name in spec.params.data_files or []]
    if not assets:
        raise ValueError("on_data_change needs params.data_files (their Assets start the DAG)")
    if timetable is None:
        return assets
    return AssetOrTimeSchedule(timetable=timetable, assets=assets)


def _doc(path: Path, spec: PipelineSpec) -> str:
    return (
        f"### {spec.resolved_dag_id(path)}\n\n{spec.description}\n\n"
        f"Config-driven pipeline from `{path.name}`: the slm_finetune stages"
        + (" with champion/challenger" if spec.champion_challenger else "")
        + f". Run it without Airflow: `slmops run --config {path.name}`."
    )


_broken: dict[Path, str] = {}
_loaded = load_pipelines(
    Path(os.environ.get("SLMOPS_PIPELINES_DIR") or PIPELINES_DIR), broken=_broken
)
_built: set[str] = set()
for _dag_id, (_path, _spec) in _loaded.items():
    try:
        _when = _schedule(_spec)
    except ValueError as _exc:
        _broken[_path] = f"{_path}: {_exc}"
        continue
    _built.add(_dag_id)
    with DAG(
        dag_id=_dag_id,
        schedule=_when,
        # No start_date: the first cron run is the next slot, not an immediate run for the last.
        catchup=False,
        doc_md=_doc(_path, _spec),
        description=_spec.description or None,
        tags=["slmops", "config", *_spec.tags],
        params=trigger_form(
            PipelineParams,
            FORM_SECTIONS,
            defaults=_spec.param_defaults(),
            omit=() if _spec.champion_challenger else ("promotion_margin",),
        ),
        default_args=DEFAULT_ARGS,
        on_failure_callback=run_failure_alert,  # logged, in the run list, mailed if set
        max_active_runs=1 if _spec.champion_challenger else 4,
    ):
        finetune_pipeline(challenge=_spec.champion_challenger)

for _path, _error in _broken.items():
    _id = stem_dag_id(_path)
    broken_config_dag(_id if _id not in _built else f"{_id}_broken", _path, _error)
