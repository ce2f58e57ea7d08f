"""OnnxOptimizeOperator: export one target, check parity, time it against PyTorch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmops_airflow._stage import StageOperator, failing_clearly


class OnnxOptimizeOperator(StageOperator):
    """Optimize a run for ``target`` (``slmops targets`` lists them); map it over a list
    of targets with ``.partial(config=...).expand(target=[...])``.

    ``config``: ``slmops.export.config.AutoOptConfig`` fields, usually ``run_path``,
    ``max_export_degradation`` and ``benchmark``. Writes RUN_PATH/onnx/TARGET/. A parity
    gate that fails fails the task with the numbers.
    """

    template_fields: Sequence[str] = ("target", "config")
    ui_color = "#e0f7fa"

    def __init__(self, *, target: str, config: dict | Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.target = target

    def execute(self, context) -> dict:
        from slmops.export.optimize import optimize

        settings = dict(self.config)
        model = settings.pop("model_name_or_path", None)
        with failing_clearly():
            result = optimize(
                model, self.target, settings.pop("output_path", None), **settings, log=self.log.info
            )
        decode = next((row for row in result.benchmark or [] if row["kind"] == "onnx"), {})
        return {
            "target": self.target,
            "output_path": str(result.output_path),
            "passed": not result.failed,
            "size_mb": result.record["size_mb"],
            "decode_speedup": decode.get("decode_speedup"),
        }
