"""A task routed to queue ``gpu`` that lands on a worker without a CUDA device fails at
once, without retries, and says so: a training would otherwise crawl on CPU or fail deep
inside, and every retry would land on the same worker.

For tests only, a worker started with SLMOPS_TEST_GPU_QUEUE_ON_CPU=1 runs such tasks on
CPU instead (``device`` gpu becomes cpu), so routing can be tested without a GPU.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from slmops_airflow.cluster.settings import GPU_QUEUE
from slmops_airflow.cluster.settings import GPU_QUEUE_ON_CPU as ON_CPU_FOR_TESTS


def check_gpu_worker(task_id: str, config: Any, log) -> Any:
    """``config`` as this worker can run it, or AirflowFailException when it cannot."""
    import torch

    if torch.cuda.is_available():
        return config
    host = socket.gethostname()
    if os.environ.get(ON_CPU_FOR_TESTS) == "1":
        log.warning(
            "%s: no CUDA device on %s; running on CPU (%s=1, tests only)",
            task_id,
            host,
            ON_CPU_FOR_TESTS,
        )
        if isinstance(config, dict) and config.get("device") == "gpu":
            return {**config, "device": "cpu"}
        return config
    raise AirflowFailException(
        f"task {task_id} is routed to queue '{GPU_QUEUE}', but this worker ({host}) has no "
        f"CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False). Start "
        f"the '{GPU_QUEUE}' workers on machines with an NVIDIA GPU, its driver and a CUDA "
        "build of torch (README: Scale out), or trigger the run with device cpu and cpu-* "
        "targets."
    )
