"""A task on queue `gpu` checks its worker before it starts: without a CUDA device it fails
at once (AirflowFailException: not retried) and says what to do; a worker started with the
tests-only switch runs it on CPU instead."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from slmops.devices import cuda_available
from slmops_airflow._stage import StageOperator
from slmops_airflow.gpu_queue import ON_CPU_FOR_TESTS

pytestmark = pytest.mark.skipif(cuda_available(), reason="checks a worker without CUDA")
CONFIG = {"device": "gpu", "method": "lora"}


def _operator(queue: str) -> StageOperator:
    return StageOperator(task_id="finetune_gpu", config=dict(CONFIG), queue=queue)


def test_a_gpu_queue_task_on_a_worker_without_cuda_fails_at_once(monkeypatch):
    monkeypatch.delenv(ON_CPU_FOR_TESTS, raising=False)
    operator = _operator("gpu")
    with pytest.raises(AirflowFailException) as failed:
        operator.pre_execute(context={})
    message = str(failed.value)
    assert "task finetune_gpu is routed to queue 'gpu'" in message
    assert "has no CUDA device" in message and "torch.cuda.is_available() is False" in message
    assert "trigger the run with device cpu" in message


def test_the_tests_only_switch_runs_it_on_cpu(monkeypatch):
    monkeypatch.setenv(ON_CPU_FOR_TESTS, "1")
    operator = _operator("gpu")
    operator.pre_execute(context={})
    assert operator.config == {**CONFIG, "device": "cpu"}


def test_other_queues_are_not_checked(monkeypatch):
    monkeypatch.delenv(ON_CPU_FOR_TESTS, raising=False)
    operator = _operator("default")
    operator.pre_execute(context={})
    assert operator.config == CONFIG
