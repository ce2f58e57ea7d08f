"""ValidateDatasetOperator: Great Expectations checks of the training data."""

from __future__ import annotations

from slmops_airflow._stage import StageOperator, failing_clearly
from slmops_airflow.lineage import LineageReporting


class ValidateDatasetOperator(LineageReporting, StageOperator):
    """Run a validation suite over the data exactly as training will format it.

    ``config``: ``data`` (``slmops.config.DataConfig`` fields), ``suite`` (a shipped
    suite name or a YAML path), ``model_name_or_path`` (whose tokenizer counts tokens),
    ``max_seq_len`` (replaces the suite's budget) and ``output_path`` (folder for
    validation.json). A failed check fails the task, naming the check and its rows.
    """

    ui_color = "#fff4e5"

    def execute(self, context) -> dict:
        from slmops.pipeline import stages

        with failing_clearly():
            result = stages.validate(dict(self.config), log=self.log.info)
        self.describe_lineage("validation", dict(self.config), result)
        return result
