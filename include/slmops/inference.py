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


def stop_ids(tokenizer, model=None) -> set[int]:
    """Token ids that end an answer: the tokenizer's EOS and the model's generation EOS."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = getattr(getattr(model, "config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return ids


def until_stop(ids: Sequence[int], stops: set[int]) -> list[int]:
    """``ids`` up to (not including) the first stop token."""
    answer: list[int] = []
    for token in ids:
        if token in stops:
            break
        answer.append(int(token))
    return answer


def greedy_token_ids(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[list[int]]:
    """The greedy answer of each prompt (already formatted) as token ids, up to EOS."""
    import torch

    if tokenizer.pad_token is None:  # common for base models; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    stops = stop_ids(tokenizer, model)
    # Left padding keeps every prompt's last token next to its first generated one.
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers: list[list[int]] = []
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
            new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
            answers.extend(until_stop(ids, stops) for ids in new_tokens)
    finally:
        tokenizer.padding_side = previous_side
    return answers


def decode_answers(tokenizer, answers: Sequence[Sequence[int]]) -> list[str]:
    """Answers as text, special tokens dropped and surrounding space stripped."""
    return [text.strip() for text in tokenizer.batch_decode(answers, skip_special_tokens=True)]


def greedy_complete(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[str]:
    """Greedy completions of ``prompts`` (already formatted), special tokens stripped."""
    answers = greedy_token_ids(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return decode_answers(tokenizer, answers)
