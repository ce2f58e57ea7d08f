"""
### slm_hpo: a hyperparameter search, then the whole pipeline with the best settings

**plan_trials** checks the form and the search (the reference guide's
`hyperparameter-search.yaml` format: `search_strategy` random or grid with `num_trials`,
`search_space` entries of type float / int / choice, `log: true` for a log scale), and
plans every trial. **check_data** validates the data once. **trial** is mapped: each
trial trains for *trial_max_steps* with its settings and is scored on the held-out rows
(a failed trial is recorded, not fatal: a refused one at once, a crashed one, e.g. out of
memory, after its retries). **select_best** runs once every trial is done, whatever became
of them, picks the best primary metric among the trials that succeeded (ties: lower eval
loss) and writes the trials table with every trial's outcome; it fails only when no trial
succeeded. Then the slm_finetune stages run
with the winner's settings and the full *max_steps*: validate, finetune, evaluate and
its gates, optimize per target, report (with the trials table) and publish.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, dag, task

from slmops.pipeline.hpo import SearchSettings
from slmops.pipeline.params import DEMO_PARAMS, FORM_SECTIONS, PipelineParams
from slmops_airflow.alerts import run_failure_alert
from slmops_airflow.form import trigger_form
from slmops_airflow.hpo import PlanTrialsOperator, SelectBestTrialOperator, TrialOperator
from slmops_airflow.pipeline import (
    DEFAULT_ARGS,
    SMALL_TASK_TIMEOUT,
    START_DATE,
    finetune_pipeline,
)
from slmops_airflow.validate import ValidateDatasetOperator

SEARCH_SECTION = {"Search": tuple(SearchSettings.model_fields)}


@dag(
    dag_id="slm_hpo",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["slmops", "fine-tuning", "hpo"],
    params={
        **trigger_form(SearchSettings, SEARCH_SECTION),
        **trigger_form(
            PipelineParams, FORM_SECTIONS, defaults=DEMO_PARAMS, omit=("promotion_margin",)
        ),
    },
    default_args=DEFAULT_ARGS,
    on_failure_callback=run_failure_alert,  # logged, in the run list, mailed if set
    max_active_runs=2,
    max_active_tasks=4,
)
def slm_hpo():
    plan = PlanTrialsOperator(task_id="plan_trials")
    check = ValidateDatasetOperator(task_id="check_data", config=plan.output["validation"])

    @task(execution_timeout=SMALL_TASK_TIMEOUT)
    def trial_list(trials: list[dict]) -> list[dict]:
        """The trials to map over: Airflow maps only over a task's return value."""
        return trials

    trials = TrialOperator.partial(task_id="trial").expand(config=trial_list(plan.output["trials"]))
    best = SelectBestTrialOperator(
        task_id="select_best",
        run_dir=plan.output["run_dir"],
        results=trials.output,  # only the trials that returned; the rest from trial.json
        # a trial task that died (after its retries) must not stop the search
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
    )
    check >> trials
    pipeline = finetune_pipeline(conf=best.output)
    best >> pipeline.prepare


slm_hpo()
