"""PNG plots for the reports (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on workers and CI
    import matplotlib.pyplot as plt

    return plt


def loss_curves(
    train: Sequence[dict],
    evaluations: Sequence[dict],
    path: Path,
    *,
    best_step: int | None = None,
) -> Path:
    """Train loss per logging step and eval loss per evaluation, against the step."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        axes.plot([p["step"] for p in train], [p["loss"] for p in train], label="train loss")
    if evaluations:
        axes.plot(
            [p["step"] for p in evaluations],
            [p["eval_loss"] for p in evaluations],
            marker="o",
            label="eval loss",
        )
    if best_step is not None:
        axes.axvline(best_step, color="grey", linestyle=":", label=f"kept: step {best_step}")
    losses = [p["loss"] for p in train] + [p["eval_loss"] for p in evaluations]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 50:
        axes.set_yscale("log")  # losses near zero would hide the eval curve's shape
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per answer token)")
    axes.set_title("Training and evaluation loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def confusion_matrix(
    matrix: Sequence[Sequence[int]],
    rows: Sequence[str],
    columns: Sequence[str],
    path: Path,
    *,
    title: str,
) -> Path:
    """Counts with reference classes as ``rows`` and predicted classes as ``columns``."""
    plt = _pyplot()
    size = max(4.0, 0.7 * len(columns) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size), dpi=110)
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(len(columns)), labels=columns, rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), labels=rows)
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    axes.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                color = "white" if count > peak / 2 else "black"
                axes.text(j, i, str(count), ha="center", va="center", color=color)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
