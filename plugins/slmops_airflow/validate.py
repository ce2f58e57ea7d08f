"""ValidateDatasetOperator: Great Expectations checks of the training data."""

from __future__ import annotations

from slmops_airflow._stage import StageOperator, failing_clearly


class ValidateDatasetOperator(StageOperator):
    """Run a validation suite over the data exactly as training will format it.

    ``config``: ``data`` (``slmops.config.DataConfig`` fields), ``suite`` (a shipped
    suite name or a YAML path), ``model_name_or_path`` (whose tokenizer counts tokens),
    ``max_seq_len`` (replaces the suite's budget) and ``output_path`` (folder for
    validation.json). A failed check fails the task, naming the check and its rows.
    """

    ui_color = "#fff4e5"

    def execute(self, context) -> dict:
        from slmops.config import DataConfig
        from slmops.validation import run

        settings = dict(self.config)
        with failing_clearly():
            report = run(
                DataConfig.model_validate(settings["data"]),
                settings.get("suite", "default"),
                model_name_or_path=settings.get("model_name_or_path"),
                max_seq_len=settings.get("max_seq_len"),
                output_dir=settings.get("output_path"),
                log=self.log.info,
            )
        return {
            "passed": report.passed,
            "train_rows": report.data["train_rows"],
            "eval_rows": report.data["eval_rows"],
            "fingerprint": report.data["fingerprint"],
            "output_path": settings.get("output_path"),
        }
