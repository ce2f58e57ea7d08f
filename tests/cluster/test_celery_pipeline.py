"""slm_finetune on the CeleryExecutor: a run triggered over REST with device gpu uses both
workers (its `gpu`-queue tasks on the `gpu` worker, the rest on the `default` one), and
each stage reads what another worker wrote through the shared artifacts root."""

from __future__ import annotations

import json

import pytest

from slmops.pipeline.locations import run_dir
from slmops.testing import tiny_pipeline_params

pytestmark = pytest.mark.cluster

DAG_ID = "slm_finetune"
GPU_TASKS = {"finetune_gpu", "optimize_gpu"}


@pytest.fixture(scope="module")
def gpu_run(cluster):
    """One finished run of slm_finetune with device gpu and a cpu and a gpu target."""
    dag = cluster.ready_dag(DAG_ID)
    conf = tiny_pipeline_params("cluster-tones", device="gpu", targets=["cpu-fp32", "gpu-fp16"])
    run = cluster.trigger_and_wait(dag, conf, timeout=900)
    run_id = run["dag_run_id"]
    assert run["state"] == "success", cluster.diagnose(dag, run_id)
    return run_id, cluster.task_instance_records(dag, run_id)


def _worker(record: dict) -> str:
    """`worker-cpu` or `worker-gpu`: the name the worker records (cluster.env's hostname
    callable) before `@host`."""
    return (record["hostname"] or "").partition("@")[0]


def test_tiny_run_uses_both_workers_through_the_shared_artifacts_root(cluster, gpu_run):
    run_id, records = gpu_run
    ran = {r["task_id"]: _worker(r) for r in records if r["state"] == "success"}
    assert ran["finetune_gpu"] == "worker-gpu", ran
    assert ran["evaluate"] == ran["publish"] == "worker-cpu", ran
    assert {r["task_id"]: r["state"] for r in records}["finetune"] == "skipped"

    # evaluate, on the cpu worker, scored the model the gpu worker trained, from the one root.
    folder = run_dir(cluster.artifacts, DAG_ID, run_id)
    evaluation = json.loads((folder / "finetune/evaluation/evaluation.json").read_text())
    assert evaluation["passed"], evaluation
    assert (folder / "finetune/merged/config.json").is_file()
    assert (folder / "finetune/onnx/gpu-fp16/model.onnx").is_file()
    latest = json.loads((cluster.artifacts / "models/cluster-tones/latest.json").read_text())
    manifest = json.loads(
        (cluster.artifacts / "models" / latest["path"] / "manifest.json").read_text()
    )
    assert {"cpu-fp32", "gpu-fp16"} <= set(manifest["targets"]), manifest["targets"]


def test_gpu_queue_tasks_run_on_the_gpu_worker_only(cluster, gpu_run):
    run_id, records = gpu_run
    placed = {
        r["task_id"] + (f"[{r['map_index']}]" if r["map_index"] >= 0 else ""): (
            r["queue"],
            _worker(r),
        )
        for r in records
        if r["state"] == "success"
    }
    assert {"finetune_gpu", "optimize_gpu[0]"} <= placed.keys(), placed
    for task, (queue, worker) in placed.items():
        expected = "worker-gpu" if task.split("[")[0] in GPU_TASKS else "worker-cpu"
        assert queue == ("gpu" if expected == "worker-gpu" else "default"), (task, queue)
        assert worker == expected, f"{task} (queue {queue}) ran on {worker}: {placed}"
    log = cluster.task_log(DAG_ID, run_id, "finetune_gpu")
    assert "running on CPU (SLMOPS_TEST_GPU_QUEUE_ON_CPU=1, tests only)" in log, log[-2000:]
