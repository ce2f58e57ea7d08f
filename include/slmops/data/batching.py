"""Examples -> token ids with completion-only labels, and the collators that batch them.

The prompt and the completion are tokenized separately and concatenated: generation
tokenizes the prompt alone and continues it, so training sees exactly the same prompt
tokens. Prompt tokens get label -100 (no loss); an end-of-sequence token closes every
completion so the model learns to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slmops.data.formatting import Example
from slmops.progress import Log, no_log

IGNORE_INDEX = -100
TOKEN_COUNT = "slmops_token_count"  # batch key: real (non-padding) tokens, popped before forward


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodingStats:
    examples: int
    truncated: int
    dropped: int  # nothing left to learn from after truncation
    longest: int


def adds_special_tokens(tokenizer, text: str) -> bool:
    """Let the tokenizer add its BOS unless the text (a rendered chat) already starts with it."""
    bos = tokenizer.bos_token
    return not (bos and text.startswith(bos))


def _token_ids(tokenizer, text: str, *, leading: bool) -> list[int]:
    if not text:
        return []
    special = leading and adds_special_tokens(tokenizer, text)
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def encode_examples(
    examples: Sequence[Example], tokenizer, max_seq_len: int, *, log: Log = no_log, what: str
) -> tuple[list[Encoded], EncodingStats]:
    """Token ids and labels; rows longer than ``max_seq_len`` are cut at the end."""
    eos = tokenizer.eos_token_id
    encoded: list[Encoded] = []
    truncated = dropped = longest = 0
    for example in examples:
        # Special tokens (a BOS) belong only at the very start of the row.
        prompt_ids = _token_ids(tokenizer, example.prompt, leading=True)
        completion_ids = _token_ids(tokenizer, example.completion, leading=not example.prompt)
        if eos is not None and eos not in completion_ids:
            completion_ids = [*completion_ids, eos]
        ids = prompt_ids + completion_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + list(completion_ids)
        longest = max(longest, len(ids))
        if len(ids) > max_seq_len:
            truncated += 1
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        if all(label == IGNORE_INDEX for label in labels):
            dropped += 1
            continue
        encoded.append(Encoded(ids, labels))
    stats = EncodingStats(len(examples), truncated, dropped, longest)
    if truncated:
        log(
            f"{what}: {truncated} of {len(examples)} examples are longer than "
            f"max_seq_len={max_seq_len} tokens (longest {longest}) and were cut"
            + (f"; {dropped} lost their whole answer and were skipped" if dropped else "")
        )
    return encoded, stats


def pack(encoded: Sequence[Encoded], max_seq_len: int) -> list[list[Encoded]]:
    """Group examples into bins of at most ``max_seq_len`` tokens (first fit, longest first).

    Deterministic for a given input order; the trainer's sampler shuffles the bins.
    """
    bins: list[list[Encoded]] = []
    room: list[int] = []
    for example in sorted(encoded, key=len, reverse=True):
        for index, free in enumerate(room):
            if len(example) <= free:
                bins[index].append(example)
                room[index] -= len(example)
                break
        else:
            bins.append([example])
            room.append(max_seq_len - len(example))
    return bins


class PaddingCollator:
    """Right-pads a batch to its longest row (or to ``pad_to`` for the baseline)."""

    def __init__(self, pad_id: int, *, pad_to: int | None = None, multiple_of: int | None = None):
        self.pad_id = pad_id
        self.pad_to = pad_to
        self.multiple_of = multiple_of

    def _width(self, longest: int) -> int:
        width = self.pad_to or longest
        if self.multiple_of:
            width = -(-width // self.multiple_of) * self.multiple_of
        return width

    def __call__(self, batch: Sequence[Encoded]) -> dict:
        import torch

        width = self._width(max(len(row) for row in batch))
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = torch.tensor(row.input_ids)
            labels[i, : len(row)] = torch.tensor(row.labels)
            mask[i, : len(row)] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            TOKEN_COUNT: sum(len(row) for row in batch),
        }


class PackedCollator:
    """Batches bins of packed examples. No attention mask: position ids restart at 0 for
    every example, which transformers turns into a block-diagonal causal mask, so packed
    examples never attend to each other."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[list[Encoded]]) -> dict:
        import torch

        width = max(sum(len(example) for example in bin_) for bin_ in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        tokens = 0
        for i, bin_ in enumerate(batch):
            start = 0
            for example in bin_:
                end = start + len(example)
                ids[i, start:end] = torch.tensor(example.input_ids)
                labels[i, start:end] = torch.tensor(example.labels)
                # A row's first token is never a target unpacked (nothing precedes it), so
                # the previous example's last token must not learn to predict it either.
                labels[i, start] = IGNORE_INDEX
                positions[i, start:end] = torch.arange(len(example))
                start = end
            tokens += start
            # Padding forms its own trailing "sequence" (positions from 0), masked from the loss.
            positions[i, start:] = torch.arange(width - start)
        return {"input_ids": ids, "position_ids": positions, "labels": labels, TOKEN_COUNT: tokens}
