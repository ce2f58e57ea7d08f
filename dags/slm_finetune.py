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

The same stages run without Airflow: `slmops run --config FILE`, or one at a time with
`slmops validate | finetune | evaluate | auto-opt`.
"""

from __future__ import annotations

from airflow.sdk import dag

from slmops.pipeline.params import DEMO_PARAMS, FORM_SECTIONS, PipelineParams
from slmops_airflow.alerts import run_failure_alert
from slmops_airflow.form import trigger_form
from slmops_airflow.pipeline import DEFAULT_ARGS, START_DATE, finetune_pipeline


@dag(
    dag_id="slm_finetune",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["slmops", "fine-tuning", "onnx"],
    # The form starts on the demo task (`make demo` runs it as is).
    params=trigger_form(
        PipelineParams, FORM_SECTIONS, defaults=DEMO_PARAMS, omit=("promotion_margin",)
    ),
    default_args=DEFAULT_ARGS,
    on_failure_callback=run_failure_alert,  # logged, in the run list, mailed if set
    max_active_runs=4,
)
def slm_finetune():
    finetune_pipeline()


slm_finetune()
