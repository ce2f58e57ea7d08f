"""What a finished training reports about itself: loss curves, parameter counts, memory."""

from __future__ import annotations

import resource

from slmops.devices import Placement


def loss_history(log_history: list[dict]) -> dict:
    train = [
        {"step": entry["step"], "loss": entry["loss"], "learning_rate": entry.get("learning_rate")}
        for entry in log_history
        if "loss" in entry
    ]
    evaluation = [
        {"step": entry["step"], "eval_loss": entry["eval_loss"]}
        for entry in log_history
        if "eval_loss" in entry
    ]
    return {
        "train_loss_history": train,
        "eval_loss_history": evaluation,
        "final_train_loss": train[-1]["loss"] if train else None,
        "final_eval_loss": evaluation[-1]["eval_loss"] if evaluation else None,
    }


def parameter_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def peak_memory_mb(placement: Placement) -> dict:
    """Peak resident memory of this process (and peak CUDA allocation on a GPU)."""
    peak = {"rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if placement.on_gpu:
        import torch

        peak["cuda"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak
