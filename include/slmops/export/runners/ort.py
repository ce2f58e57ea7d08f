"""Greedy decoding of a torch.onnx fallback export with a plain onnxruntime session.

The folder holds model.onnx (inputs ``input_ids``, ``attention_mask``,
``past_key_values.N.key/value``; outputs ``logits``, ``present.N.key/value``), the tokenizer
and ``slmops_onnx.json`` (written by ``slmops.export.fallback``). Prompts are left-padded
into one batch; each step feeds only the new token and the previous step's cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from slmops.errors import GenerationError, RuntimeLoadError
from slmops.export import MODEL_FILE
from slmops.export.runners.base import FORMAT, METADATA_FILE, cpu_threads

_NUMPY_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


class OrtCausalLM:
    """An exported causal LM; ``stream_ids`` matches ``slmops.export.runners.base.Runner``."""

    def __init__(self, session, spec: dict, tokenizer=None, *, name: str = MODEL_FILE):
        import numpy as np

        self.session = session
        self.spec = spec
        self.tokenizer = tokenizer
        self.name = name
        self.stop_ids = set(spec["eos_token_ids"])
        past_inputs = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
        self._past_dtype = np.dtype(_NUMPY_DTYPES.get(past_inputs[0].type, "float32"))

    @classmethod
    def load(cls, folder: Path, providers: list[str] | None = None) -> OrtCausalLM:
        """Session over ``folder/model.onnx`` (CPU unless ``providers`` says otherwise)."""
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        spec = _read_spec(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()  # as GenaiRunner: every usable core
        try:
            session = ort.InferenceSession(
                str(folder / MODEL_FILE),
                options,
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeLoadError(
                f"onnxruntime could not load {folder / MODEL_FILE}: {exc}. Re-export the model."
            ) from None
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(session, spec, tokenizer, name=str(folder))

    def step(self, input_ids, attention_mask, past: list | None = None):
        """One forward pass: (logits [batch, new, vocab], present caches). ``attention_mask``
        covers past + new tokens; ``past=None`` starts from an empty cache."""
        import numpy as np

        input_ids = np.asarray(input_ids, dtype=np.int64)
        if past is None:
            shape = (len(input_ids), self.spec["num_kv_heads"], 0, self.spec["head_dim"])
            past = [np.zeros(shape, self._past_dtype)] * (2 * self.spec["num_layers"])
        feeds = {"input_ids": input_ids, "attention_mask": np.asarray(attention_mask, np.int64)}
        feeds.update(zip(self.spec["inputs"][2:], past, strict=True))
        logits, *present = self.session.run(self.spec["outputs"], feeds)
        return logits, present

    def stream_ids(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        adapter: str | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[int]:
        """Greedy ids of one prompt, one at a time; the EOS id itself is not yielded."""
        if adapter is not None:
            raise GenerationError(
                f"{self.name} is a single merged model; it has no adapter {adapter!r} "
                "(merge the adapter before exporting)"
            )
        for next_ids in self._greedy_steps([prompt_ids], max_new_tokens):
            token = int(next_ids[0])
            if stop_at_eos and token in self.stop_ids:
                return
            yield token

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        """The new ids of one prompt's greedy answer, up to (not including) EOS."""
        return list(self.stream_ids(prompt_ids, max_new_tokens))

    def generate_batch(
        self, prompts_ids: Sequence[Sequence[int]], max_new_tokens: int
    ) -> list[list[int]]:
        """``generate_ids`` for several prompts in one left-padded batch."""
        answers: list[list[int]] = [[] for _ in prompts_ids]
        done = [False] * len(prompts_ids)
        for next_ids in self._greedy_steps(prompts_ids, max_new_tokens):
            for row, token in enumerate(next_ids.tolist()):
                if done[row]:
                    continue
                if token in self.stop_ids:
                    done[row] = True
                else:
                    answers[row].append(token)
            if all(done):
                break
        return answers

    def complete(
        self, prompts: list[str], max_new_tokens: int, *, batch_size: int = 8
    ) -> list[str]:
        """Greedy answers to already formatted prompts, special tokens dropped, stripped."""
        from slmops.inference import decode_answers

        if self.tokenizer is None:
            raise GenerationError(f"{self.name} was opened without a tokenizer; use load()")
        answers: list[list[int]] = []
        for start in range(0, len(prompts), batch_size):
            encoded = [
                self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                for prompt in prompts[start : start + batch_size]
            ]
            answers.extend(self.generate_batch(encoded, max_new_tokens))
        return decode_answers(self.tokenizer, answers)

    def _greedy_steps(self, prompts_ids: Sequence[Sequence[int]], max_new_tokens: int):
        """Yield each step's greedy next id per row. Lazy: the next forward pass runs only
        when the caller asks for the next token."""
        import numpy as np

        input_ids, attention_mask = self._left_padded(prompts_ids)
        past = None
        for _ in range(self._step_budget(attention_mask, max_new_tokens)):
            logits, past = self.step(input_ids, attention_mask, past)
            next_ids = logits[:, -1].argmax(-1)
            yield next_ids
            input_ids = next_ids[:, None].astype(np.int64)
            attention_mask = np.pad(attention_mask, ((0, 0), (0, 1)), constant_values=1)

    def _left_padded(self, prompts_ids: Sequence[Sequence[int]]):
        import numpy as np

        if not prompts_ids or any(len(ids) == 0 for ids in prompts_ids):
            raise GenerationError(f"{self.name}: every prompt needs at least one token")
        width = max(len(ids) for ids in prompts_ids)
        input_ids = np.full((len(prompts_ids), width), self.spec["pad_token_id"], np.int64)
        attention_mask = np.zeros((len(prompts_ids), width), np.int64)
        for row, ids in enumerate(prompts_ids):
            input_ids[row, width - len(ids) :] = ids
            attention_mask[row, width - len(ids) :] = 1
        return input_ids, attention_mask

    def _step_budget(self, attention_mask, max_new_tokens: int) -> int:
        """Steps that keep every position below the model's position limit (GPT-2 style
        learned positions have no entry past it)."""
        limit = self.spec.get("max_positions")
        longest = int(attention_mask.sum(-1).max())
        if limit is None:
            return max_new_tokens
        if longest > limit:
            raise GenerationError(
                f"{self.name}: a prompt of {longest} tokens exceeds the model's "
                f"{limit} positions; shorten it"
            )
        # The token fed at step i sits at position longest + i - 1.
        return max(0, min(max_new_tokens, limit - longest + 1))


def _read_spec(folder: Path) -> dict:
    path = folder / METADATA_FILE
    if not path.is_file():
        raise RuntimeLoadError(
            f"{folder} has no {METADATA_FILE}; it is not a torch.onnx fallback export "
            "(export it again with slmops)"
        )
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec.get("format") != FORMAT or not spec.get("kv_cache"):
        raise RuntimeLoadError(
            f"{path} describes format {spec.get('format')!r} (kv_cache "
            f"{spec.get('kv_cache')}); this runtime reads {FORMAT!r} with a KV cache. "
            "Re-export the model with this slmops version."
        )
    return spec
