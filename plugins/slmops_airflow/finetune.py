"""FineTuneOperator: LoRA / QLoRA / DoRA / full fine-tuning."""

from __future__ import annotations

from slmops_airflow._stage import StageOperator, failing_clearly


class FineTuneOperator(StageOperator):
    """Train with ``config`` (``slmops.training.config.FinetuneConfig`` fields; its
    ``output_path`` is the run folder). A retry resumes from the last checkpoint, and a
    finished run with the same settings is reused rather than trained again. Route it to
    GPU workers with ``queue="gpu"``.
    """

    ui_color = "#e6f4ea"

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            return stages.finetune(dict(self.config), log=self.log.info)
