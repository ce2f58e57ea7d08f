"""Greedy decoding of a folder written by onnxruntime-genai's model builder."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from slmops.errors import RuntimeLoadError
from slmops.export.runners.base import GENAI_CONFIG, cpu_threads


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
