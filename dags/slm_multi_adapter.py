"""
### slm_multi_adapter: several LoRA adapters of one base, shipped as one ONNX model

**plan_adapters** checks the form: *adapters* lists two or more adapters, each with its
own `name`, `data_files` and, where it differs from the shared settings, its template
(`template_kind`, `text_template`, `input_field`, `output_field`...), `label_field` and
`suite`; training settings, gates and the base model are shared. **validate**,
**finetune** and **evaluate** are mapped: one task per adapter, each in
`RUN_DIR/adapters/NAME/`. **build_multi_adapter** exports the base once for
*multi_target* with one `.onnx_adapter` file per adapter, switched per request, and
scores every adapter through that shared base on its own eval rows. **report** puts the
adapters side by side (base, fine-tuned, through the shared base, sample answers) and
**publish** ships the model as the Asset `slmops://models/NAME`.

Without Airflow: `slmops finetune --task_name NAME` per adapter, then
`slmops generate-adapter`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from slmops.pipeline.multi_adapter import MultiAdapterSettings
from slmops.pipeline.params import DEMO_PARAMS, FORM_SECTIONS, REVIEW_FIELDS, PipelineParams
from slmops_airflow.alerts import run_failure_alert
from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.form import trigger_form
from slmops_airflow.multi_adapter import BuildMultiAdapterOperator, PlanAdaptersOperator
from slmops_airflow.pipeline import DEFAULT_ARGS, SMALL_TASK_TIMEOUT, START_DATE
from slmops_airflow.publish import PublishModelOperator
from slmops_airflow.report import ReportOperator
from slmops_airflow.validate import ValidateDatasetOperator

DEMO_ADAPTERS = [
    {
        "name": "label",
        "data_files": ["phrase_tones.jsonl"],
        "template_kind": "chat",  # over the form's input_field and output_field
        "label_field": "tone",
        "suite": "phrase_tones",
    },
    {
        "name": "explain",
        "data_files": ["phrase_tones.jsonl"],
        "template_kind": "template",
        "text_template": "<|im_start|>user\nWhy does this sound the way it does? {phrase}"
        "<|im_end|>\n<|im_start|>assistant\nIt sounds {tone}.",
        "suite": "default",
    },
]
# Adapters served as inputs run their LoRA at every decoded token: on q and v only (PEFT's
# default for Llama) they pack into the base's q/k/v MatMul as one branch a layer and
# decode at 0.95x the merged model, against 0.75x on all seven projections, for the same
# demo accuracy (benchmarks/RESULTS.md). A base without q_proj/v_proj names its own.
SERVED_ADAPTERS = {"target_modules": ["q_proj", "v_proj"]}
# The per-adapter fields and the ones a shared base cannot vary are not in the form.
OMITTED = (
    "data_files",
    "data_name",
    "template_kind",
    "text_template",
    "text_field",
    "label_field",
    "suite",
    "targets",
    "promotion_margin",
    "method",
    *REVIEW_FIELDS,  # a multi-adapter run publishes without a review step
)


@dag(
    dag_id="slm_multi_adapter",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    tags=["slmops", "fine-tuning", "onnx", "multi-adapter"],
    params={
        **trigger_form(
            MultiAdapterSettings,
            {"Adapters": tuple(MultiAdapterSettings.model_fields)},
            defaults={"adapters": DEMO_ADAPTERS},
        ),
        **trigger_form(
            PipelineParams,
            FORM_SECTIONS,
            defaults={**DEMO_PARAMS, "model_name": "phrase-tones-multi", **SERVED_ADAPTERS},
            omit=OMITTED,
        ),
    },
    default_args=DEFAULT_ARGS,
    on_failure_callback=run_failure_alert,  # logged, in the run list, mailed if set
    max_active_runs=2,
)
def slm_multi_adapter():
    plan = PlanAdaptersOperator(task_id="plan_adapters")

    @task(execution_timeout=SMALL_TASK_TIMEOUT)
    def per_adapter(configs: list[dict]) -> list[dict]:
        """One config per adapter to map over: Airflow maps only over a return value."""
        return configs

    validate = ValidateDatasetOperator.partial(task_id="validate").expand(
        config=per_adapter.override(task_id="validation_configs")(plan.output["validation"])
    )
    finetune = FineTuneOperator.partial(task_id="finetune").expand(
        config=per_adapter.override(task_id="finetune_configs")(plan.output["finetune"])
    )
    evaluate = EvaluateModelOperator.partial(task_id="evaluate").expand(
        config=per_adapter.override(task_id="evaluate_configs")(plan.output["evaluate"])
    )
    build = BuildMultiAdapterOperator(task_id="build_multi_adapter", run_dir=plan.output["run_dir"])
    report = ReportOperator(
        task_id="report", run_dir=plan.output["run_dir"], trigger_rule="all_done"
    )
    publish = PublishModelOperator(
        task_id="publish", run_dir=plan.output["run_dir"], models_root=plan.output["models_root"]
    )
    validate >> finetune >> evaluate >> build >> report
    [build, report] >> publish


slm_multi_adapter()
