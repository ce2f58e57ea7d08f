"""Operators that import the ML stack and load models set Python's collector for a process
that runs one job (slmops.gc_scope.collect_less_often) before they execute, as the slmops
command does: Airflow runs each task in a process of its own."""

from __future__ import annotations

import gc

import pytest

from slmops.gc_scope import ONE_JOB_THRESHOLD
from slmops_airflow.champion import ChallengeChampionOperator
from slmops_airflow.evaluate import EvaluateModelOperator
from slmops_airflow.finetune import FineTuneOperator
from slmops_airflow.hpo import TrialOperator
from slmops_airflow.multi_adapter import BuildMultiAdapterOperator
from slmops_airflow.optimize import OnnxOptimizeOperator
from slmops_airflow.publish import PublishModelOperator
from slmops_airflow.validate import ValidateDatasetOperator

STAGES = [
    ValidateDatasetOperator,
    FineTuneOperator,
    EvaluateModelOperator,
    OnnxOptimizeOperator,
    TrialOperator,
]
BY_RUN_DIR = [ChallengeChampionOperator, BuildMultiAdapterOperator]


@pytest.fixture
def default_threshold():
    saved = gc.get_threshold()
    gc.set_threshold(700, saved[1], saved[2])  # the tests' process has raised it already
    yield
    gc.set_threshold(*saved)


def _operator(kind):
    if kind in BY_RUN_DIR:
        return kind(task_id="heavy", run_dir="/nowhere")
    extra = {"target": "cpu-int4"} if kind is OnnxOptimizeOperator else {}
    return kind(task_id="heavy", config={"device": "cpu"}, **extra)


@pytest.mark.parametrize("kind", STAGES + BY_RUN_DIR, ids=lambda kind: kind.__name__)
def test_a_task_that_loads_models_collects_less_often(kind, default_threshold):
    _operator(kind).pre_execute(context={})
    assert gc.get_threshold()[0] == ONE_JOB_THRESHOLD


def test_a_light_task_leaves_the_collector_alone(default_threshold):
    # publish copies files: its process keeps Python's defaults
    publish = PublishModelOperator(task_id="publish", run_dir="/nowhere", models_root="/nowhere")
    publish.pre_execute(context={})
    assert gc.get_threshold()[0] == 700
