"""Run an exported model: greedy token streams from onnxruntime-genai, the torch.onnx
fallback, or the PyTorch reference, behind one small interface.

Every runner has ``stream_ids(prompt_ids, max_new_tokens, adapter=None, stop_at_eos=True)``
yielding generated token ids one at a time, so parity (whole answers) and the benchmark
(time to first token, decode speed) treat them alike. Prompts are tokenized once with the
Hugging Face tokenizer, so every runner starts from the same ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from slmops.errors import SlmopsError

GENAI_CONFIG = "genai_config.json"


class RuntimeLoadError(SlmopsError):
    """An exported model folder could not be loaded."""


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
    from slmops.export.ort_runner import METADATA_FILE

    folder = Path(folder)
    return is_genai_folder(folder) or (folder / METADATA_FILE).is_file()


def is_genai_folder(folder: Path) -> bool:
    return (Path(folder) / GENAI_CONFIG).is_file()


class GenaiRunner:
    """A folder written by onnxruntime-genai's builder (``og.Model``), with optional
    ``.onnx_adapter`` files switched per request."""

    def __init__(self, folder: Path, *, device: str = "cpu"):
        import onnxruntime_genai as og

        self.folder = Path(folder)
        config = og.Config(str(self.folder))
        if device == "gpu":
            config.clear_providers()
            config.append_provider("cuda")
        else:
            # genai leaves onnxruntime's intra-op pool at one thread on some machines (half
            # the decode speed on 2 cores); use every core this process may run on, as torch does.
            config.overlay(
                json.dumps(
                    {
                        "model": {
                            "decoder": {"session_options": {"intra_op_num_threads": cpu_threads()}}
                        }
                    }
                )
            )
        try:
            self.model = og.Model(config)
        except Exception as exc:  # og raises plain RuntimeError
            raise RuntimeLoadError(
                f"onnxruntime-genai could not load {self.folder}: {exc}"
            ) from None
        self._og = og
        self._adapters = None
        self.adapter_names: list[str] = []
        self.stop_ids = _genai_stop_ids(self.folder)

    def load_adapter(self, path: Path, name: str) -> None:
        """Make ``name`` selectable per request (``stream_ids(..., adapter=name)``)."""
        if self._adapters is None:
            self._adapters = self._og.Adapters(self.model)
        try:
            self._adapters.load(str(path), name)
        except Exception as exc:
            raise RuntimeLoadError(
                f"adapter {path} does not load into {self.folder}: {exc}"
            ) from None
        self.adapter_names.append(name)

    def stream_ids(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        adapter: str | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[int]:
        params = self._og.GeneratorParams(self.model)
        length = len(prompt_ids) + max_new_tokens
        options = {"max_length": length, "do_sample": False}
        if not stop_at_eos:
            options["min_length"] = length  # EOS suppressed: a fixed number of tokens
        params.set_search_options(**options)
        generator = self._og.Generator(self.model, params)
        if adapter is not None:
            if adapter not in self.adapter_names:
                raise RuntimeLoadError(
                    f"no adapter named {adapter!r} is loaded; loaded: "
                    f"{', '.join(self.adapter_names) or 'none'}"
                )
            generator.set_active_adapter(self._adapters, adapter)
        generator.append_tokens(list(prompt_ids))
        for _ in range(max_new_tokens):
            if generator.is_done():
                return
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if stop_at_eos and token in self.stop_ids:
                return
            yield token


def _genai_stop_ids(folder: Path) -> set[int]:
    config = json.loads((folder / GENAI_CONFIG).read_text(encoding="utf-8"))
    eos = config.get("model", {}).get("eos_token_id")
    return {eos} if isinstance(eos, int) else set(eos or ())


class TorchRunner:
    """The PyTorch model itself, decoding token by token with its KV cache (what
    ``model.generate`` does, but observable per token for timing)."""

    def __init__(self, model, tokenizer):
        from slmops.inference import stop_ids

        self.model = model
        self.stop_ids = stop_ids(tokenizer, model)

    def stream_ids(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        adapter: str | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[int]:
        import torch

        if adapter is not None:
            raise ValueError(
                "the PyTorch reference runs one merged model; adapters are not switched"
            )
        with torch.inference_mode():
            inputs = torch.tensor([list(prompt_ids)], device=self.model.device)
            output = self.model(input_ids=inputs, use_cache=True)
            for produced in range(max_new_tokens):
                token = int(output.logits[0, -1].argmax())
                if stop_at_eos and token in self.stop_ids:
                    return
                yield token
                if produced + 1 < max_new_tokens:
                    step = torch.tensor([[token]], device=self.model.device)
                    output = self.model(input_ids=step, cache=output.cache, use_cache=True)


def open_exported(folder: Path, *, device: str = "cpu") -> Runner:
    """The runner for an exported folder: genai's when it has genai_config.json, else
    the torch.onnx fallback's onnxruntime session."""
    folder = Path(folder)
    if is_genai_folder(folder):
        return GenaiRunner(folder, device=device)
    from slmops.export.ort_runner import OrtCausalLM

    providers = ["CUDAExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]
    return OrtCausalLM.load(folder, providers=providers)


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
