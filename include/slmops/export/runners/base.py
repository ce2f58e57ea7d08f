"""What every runner of an exported model shares: the protocol, and the helpers around it.

A runner has ``stream_ids(prompt_ids, max_new_tokens, adapter=None, stop_at_eos=True)``
yielding generated token ids one at a time, so parity (whole answers) and the benchmark
(time to first token, decode speed) treat them alike. Prompts are tokenized once with the
Hugging Face tokenizer, so every runner starts from the same ids. This module imports no
runtime: the runners themselves are imported when one is opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

GENAI_CONFIG = "genai_config.json"  # onnxruntime-genai's builder writes it
FORMAT = "slmops-ort-causal-lm"  # the torch.onnx fallback's export format
METADATA_FILE = "slmops_onnx.json"  # the fallback's description of its model.onnx


class Runner(Protocol):
    def stream_ids(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        adapter: str | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[int]: ...


def cpu_threads() -> int:
    """The cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def is_exported_folder(folder: Path) -> bool:
    """A folder of ``slmops auto-opt`` / ``generate-adapter`` (either exporter)."""
    folder = Path(folder)
    return is_genai_folder(folder) or (folder / METADATA_FILE).is_file()


def is_genai_folder(folder: Path) -> bool:
    return (Path(folder) / GENAI_CONFIG).is_file()


def greedy_answers(
    runner: Runner,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    adapter: str | None = None,
) -> list[list[int]]:
    """Each prompt's greedy answer as token ids, up to EOS."""
    return [list(runner.stream_ids(ids, max_new_tokens, adapter=adapter)) for ids in prompt_ids]


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Formatted prompts as ids, no special tokens added (the template has them)."""
    return [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
