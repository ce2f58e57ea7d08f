"""What slmops operators share: settings as one templated dict, clear task failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.gpu_queue import GPU_QUEUE, check_gpu_worker


@contextlib.contextmanager
def failing_clearly() -> Iterator[None]:
    """A refused input or a failed gate fails the task at once, without retries (the
    same input fails the same way), its explanation as the failure message in the log.
    Anything else (a killed worker, a full disk) propagates and is retried."""
    from slmops.errors import SlmopsError

    try:
        yield
    except SlmopsError as exc:
        raise AirflowFailException(str(exc)) from exc


class StageOperator(BaseOperator):
    """An operator whose settings are one templated dict, ``config`` (often an XCom)."""

    template_fields: Sequence[str] = ("config",)

    def __init__(self, *, config: dict | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config

    def pre_execute(self, context: Any) -> None:
        """On queue ``gpu``: fail at once on a worker without CUDA (slmops_airflow.gpu_queue)."""
        if self.queue == GPU_QUEUE:
            self.config = check_gpu_worker(self.task_id, self.config, self.log)
