"""What slmops operators share: settings as one templated dict, clear task failures."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.gpu_queue import GPU_QUEUE, check_gpu_worker
from slmops_airflow.timeouts import STAGE_TIMEOUTS


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


class OneTaskProcess:
    """For operators that import torch, transformers or Great Expectations and load models:
    before ``execute``, Python's collector is set for a process that runs one job and exits
    (``slmops.gc_scope.collect_less_often``), as the ``slmops`` command is. Airflow runs
    each task in a process of its own (the supervisor's child on LocalExecutor and Celery
    workers), and ``airflow dags test`` runs one DAG and exits; at the default threshold
    the task's imports and model loading trigger thousands of collections."""

    def pre_execute(self, context: Any) -> None:
        from slmops.gc_scope import collect_less_often

        collect_less_often()
        super().pre_execute(context)


class StageOperator(OneTaskProcess, BaseOperator):
    """An operator whose settings are one templated dict, ``config`` (often an XCom).

    An XCom can be written through the REST API, so ``config`` is only a claim: the stage
    checks it against the plan in this run's own folder (``run_folder``) and uses the
    plan's settings (``slmops.pipeline.stages``' ``from_run``). ``execution_timeout``
    defaults to the stage's row of ``slmops_airflow.timeouts.STAGE_TIMEOUTS``."""

    template_fields: Sequence[str] = ("config",)

    def __init__(
        self,
        *,
        config: dict | Any,
        # each stage operator gives its own row; the HPO trial operator inherits this one
        execution_timeout: datetime.timedelta | None = STAGE_TIMEOUTS["trial"],
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.config = config

    def run_folder(self, context: Any) -> Path:
        """This DAG run's folder: from the deployment's artifacts root, the DAG id and the
        run id, never from an XCom."""
        from slmops_airflow.roots import this_run_dir

        with failing_clearly():
            return this_run_dir(context)

    def pre_execute(self, context: Any) -> None:
        """Set the collector for a one-task process (OneTaskProcess); on queue ``gpu``: fail
        at once on a worker without CUDA (slmops_airflow.gpu_queue)."""
        super().pre_execute(context)
        if self.queue == GPU_QUEUE:
            self.config = check_gpu_worker(self.task_id, self.config, self.log)
