"""
### slm_finetune_on_data_change: retrain when the data changes, publish only a better model

Starts when the Asset `slmops://data/phrase_tones` gets an event (a producer task's
outlet, or `POST /api/v2/assets/events`), and every Monday at 03:00 UTC. An event's
`extra` may carry `{"params": {...}}`: only `data_files`, `train_split` and `eval_split`
(EVENT_PARAMS), checked like the form's; any other key fails the run naming it. The
published name and the gates always come from this DAG. When several events are queued,
the newest one's params are used whole and the others are logged as superseded.

It runs the slm_finetune stages, then **challenge** scores the new model (the
challenger) and the published one (the champion) on the same eval rows of the new data
with the same ONNX target. **approve** asks a reviewer in the UI (*require_approval*, on
by default here; a rejection or a timeout keeps the champion). **publish** replaces the
champion only when the challenger is better by at least *promotion_margin*; otherwise it
is skipped and the champion stays.
The decision and both scores are in the run report (`report/report.html`).
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetOrTimeSchedule, dag

from slmops.pipeline.params import DEMO_PARAMS, EVENT_PARAMS, FORM_SECTIONS, PipelineParams
from slmops.pipeline.publish import data_asset_uri
from slmops_airflow.alerts import run_failure_alert
from slmops_airflow.form import trigger_form
from slmops_airflow.pipeline import DEFAULT_ARGS, cron_timetable, finetune_pipeline

DEMO_DATA = Asset(data_asset_uri(DEMO_PARAMS["data_files"][0]))


@dag(
    dag_id="slm_finetune_on_data_change",
    schedule=AssetOrTimeSchedule(timetable=cron_timetable("0 3 * * 1"), assets=[DEMO_DATA]),
    # No start_date: the first cron run is the next slot, not an immediate run for the last.
    catchup=False,
    doc_md=__doc__,
    tags=["slmops", "fine-tuning", "onnx", "champion-challenger"],
    # A retrained champion replaces the published model only once a reviewer approves it.
    params=trigger_form(
        PipelineParams, FORM_SECTIONS, defaults={**DEMO_PARAMS, "require_approval": True}
    ),
    default_args=DEFAULT_ARGS,
    on_failure_callback=run_failure_alert,  # logged, in the run list, mailed if set
    max_active_runs=1,  # challengers are judged one at a time against the latest champion
)
def slm_finetune_on_data_change():
    # What an event may change: where the data is, nothing else.
    finetune_pipeline(challenge=True, event_params=EVENT_PARAMS)


slm_finetune_on_data_change()
