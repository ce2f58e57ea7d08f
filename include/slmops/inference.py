"""Batched greedy generation with a transformers model (the PyTorch reference path)."""

from __future__ import annotations

from collections.abc import Sequence


def chat_prompt(tokenizer, user_message: str, system: str | None = None) -> str:
    """``user_message`` rendered with the tokenizer's chat template, ready for the reply."""
    if not tokenizer.chat_template:
        raise ValueError("this tokenizer has no chat template; pass a plain prompt instead")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user_message})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def greedy_complete(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[str]:
    """Greedy completions of ``prompts`` (already formatted), special tokens stripped."""
    import torch

    if tokenizer.pad_token is None:  # common for base models; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    # Left padding keeps every prompt's last token next to its first generated one.
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    completions: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                list(prompts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            with torch.inference_mode():
                output = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            completions.extend(
                text.strip()
                for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            )
    finally:
        tokenizer.padding_side = previous_side
    return completions
