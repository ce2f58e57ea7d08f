"""
### slm_finetune: from training data to a gated, ONNX-optimized model

**prepare** checks the form and confines every file it names to the data roots, then
writes the run's plan into its own folder (`ARTIFACTS_ROOT/runs/slm_finetune/RUN_ID/`).
**validate** runs a Great Expectations suite over the data as training will see it
(schema, labels, lengths, duplicates, leakage). **finetune** trains with LoRA, QLoRA,
DoRA or in full (on queue `gpu` when *device* is `gpu`); a retry resumes from its last
checkpoint. **evaluate** scores the base and fine-tuned models on the held-out rows and
judges the gates (overfitting, minimum score, improvement over the base): a failed gate
fails the task, with its explanation in the log, and nothing is exported or published.
**optimize** exports one ONNX model per chosen target (a mapped task each; GPU targets
on queue `gpu`), checks its parity with PyTorch on the eval rows and times it.
**report** writes one report of the whole run, whatever stage it reached, and
**publish** ships the model to `ARTIFACTS_ROOT/models/NAME/` with a manifest and
updates the Asset `slmops://models/NAME`.

The same stages run without Airflow: `slmops validate | finetune | evaluate | auto-opt`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from slmops.pipeline.params import FORM_SECTIONS, PipelineParams
from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.form import trigger_form
from slmops_airflow.optimize import OnnxOptimizeOperator
from slmops_airflow.prepare import PrepareRunOperator
from slmops_airflow.publish import PublishModelOperator
from slmops_airflow.report import ReportOperator
from slmops_airflow.validate import ValidateDatasetOperator


@dag(
    dag_id="slm_finetune",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["slmops", "fine-tuning", "onnx"],
    params=trigger_form(PipelineParams, FORM_SECTIONS),
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    max_active_runs=4,
)
def slm_finetune():
    plan = PrepareRunOperator(task_id="prepare")
    validate = ValidateDatasetOperator(task_id="validate", config=plan.output["validation"])

    @task.branch
    def route_training(train_on_gpu: bool) -> str:
        return "finetune_gpu" if train_on_gpu else "finetune"

    @task
    def targets(names: list[str]) -> list[str]:
        """The targets to map over: Airflow maps only over a task's return value."""
        return names

    route = route_training(plan.output["train_on_gpu"])
    finetune = FineTuneOperator(task_id="finetune", config=plan.output["finetune"])
    finetune_gpu = FineTuneOperator(
        task_id="finetune_gpu", config=plan.output["finetune"], queue="gpu"
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        config=plan.output["evaluate"],
        trigger_rule="none_failed_min_one_success",  # one of the two trainings ran
    )
    optimize = OnnxOptimizeOperator.partial(
        task_id="optimize", config=plan.output["optimize"]
    ).expand(target=targets.override(task_id="cpu_targets")(plan.output["cpu_targets"]))
    optimize_gpu = OnnxOptimizeOperator.partial(
        task_id="optimize_gpu", config=plan.output["optimize"], queue="gpu"
    ).expand(target=targets.override(task_id="gpu_targets")(plan.output["gpu_targets"]))
    report = ReportOperator(
        task_id="report", run_dir=plan.output["run_dir"], trigger_rule="all_done"
    )
    publish = PublishModelOperator(
        task_id="publish",
        run_dir=plan.output["run_dir"],
        models_root=plan.output["models_root"],
        trigger_rule="none_failed_min_one_success",  # an empty target list is skipped
    )

    validate >> route >> [finetune, finetune_gpu] >> evaluate >> [optimize, optimize_gpu]
    [optimize, optimize_gpu] >> report
    [optimize, optimize_gpu, report] >> publish


slm_finetune()
