"""The PyTorch reference model as a runner, so parity and the benchmark compare alike."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


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
