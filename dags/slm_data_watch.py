"""
### slm_data_watch: tell Airflow when the demo dataset changes

Every 15 minutes, **watch_phrase_tones** hashes `phrase_tones.jsonl` (under the data
roots) and compares it with the previous look. When the file changed, the task succeeds
and emits an event on the Asset `slmops://data/phrase_tones`, which starts
**slm_finetune_on_data_change**; when it did not, the task is skipped and nothing is
emitted. The first look only records the file, so turning this DAG on does not retrain
by itself. **record_phrase_tones** then records the new hash: only after the event went
out, so a check killed in between reports the change again instead of losing it. The
hashes are in `ARTIFACTS_ROOT/data_watch/slm_data_watch/`, one file per watched file.

Add a `watch_data_file(name, file)` pair per file you want watched, or post the event
yourself (`POST /api/v2/assets/events`).
"""

from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag

from slmops_airflow.alerts import run_failure_alert
from slmops_airflow.data_watch import watch_data_file
from slmops_airflow.pipeline import DEFAULT_ARGS


@dag(
    dag_id="slm_data_watch",
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    # No start_date: the first cron run is the next slot, not an immediate run for the last.
    catchup=False,
    doc_md=__doc__,
    tags=["slmops", "data"],
    default_args=DEFAULT_ARGS,
    on_failure_callback=run_failure_alert,  # logged, in the run list, mailed if set
    max_active_runs=1,
)
def slm_data_watch():
    watch_data_file("phrase_tones", "phrase_tones.jsonl")


slm_data_watch()
