"""The benchmark's measurements and the parity check's token agreement."""

from __future__ import annotations

import os

import pytest

from slmops.export.benchmark import Subject, measure, size_on_disk, with_speedups
from slmops.export.parity import agreement_prompts, token_agreement
from slmops.export.runners import cpu_threads
from slmops.export.runners.pytorch import TorchRunner
from slmops.models import load_causal_lm, load_padding_tokenizer


def test_token_agreement_counts_the_matching_prefix():
    reference = [[1, 2, 3, 4], [5, 6], [], [7]]
    exported = [[1, 2, 9, 4], [5, 6], [], [8, 9]]
    agreement = token_agreement(reference, exported)
    # 2/4 before the first difference, 2/2, both empty, 0/2
    assert agreement["mean_prefix_agreement"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert agreement["identical_answers"] == 0.5 and agreement["prompts"] == 4
    with pytest.raises(ValueError):
        token_agreement([[1]], [])


def test_agreement_prompts_use_the_chat_template(tiny_tokenizer):
    prompts = agreement_prompts(tiny_tokenizer, ["e1", "e2", "e3"], 2)
    assert prompts[:2] == ["e1", "e2"] and len(prompts) == 6
    assert prompts[2].startswith("<|im_start|>user\nWhat is the capital of France?")


def test_torch_runner_matches_generate(tiny_model_dir):
    tokenizer = load_padding_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    ids = tokenizer("<|im_start|>user\nhello", add_special_tokens=False)["input_ids"]
    import torch

    with torch.inference_mode():
        expected = model.generate(
            torch.tensor([ids]), max_new_tokens=6, min_new_tokens=6, do_sample=False
        )[0, len(ids) :].tolist()
    runner = TorchRunner(model, tokenizer)
    assert list(runner.stream_ids(ids, 6, stop_at_eos=False)) == expected


def test_measure_runs_each_model_in_its_own_process(tiny_model_dir, tmp_path):
    from slmops.export.optimize import optimize

    exported = optimize(
        tiny_model_dir, "cpu-fp32", tmp_path / "onnx", parity=False, benchmark=False
    ).output_path
    subjects = [Subject("torch", "torch", tiny_model_dir), Subject("onnx", "onnx", exported)]
    results = with_speedups(measure(subjects, [[1, 2, 3], [4, 5, 6, 7]], 10, rounds=2), "torch")
    assert [row["label"] for row in results] == ["torch", "onnx"]
    for row in results:
        assert row["decoded_tokens"] == 2 * 9 and row["prompts"] == 2 and row["rounds"] == 2
        assert row["first_token_ms"] > 0 and row["decode_tokens_per_s"] > 0
        assert 0 < row["model_rss_mb"] < row["peak_rss_mb"]
    # The ONNX child never imports torch: far less resident memory than the PyTorch one.
    assert results[1]["peak_rss_mb"] < results[0]["peak_rss_mb"]
    assert results[0]["decode_speedup"] == 1.0 and results[1]["decode_speedup"] > 0
    assert results[1]["size_mb"] == pytest.approx(size_on_disk(exported) / 2**20, abs=0.1)


def test_size_on_disk_counts_weights_only(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 100)
    (tmp_path / "tokenizer.json").write_bytes(b"x" * 1000)
    assert size_on_disk(tmp_path) == 110


def test_cpu_threads_follow_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert cpu_threads() == (expected or os.cpu_count())
