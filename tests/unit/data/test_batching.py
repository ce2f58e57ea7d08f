"""Completion-only labels, truncation, padding and packing."""

from __future__ import annotations

import pytest
import torch

from slmops.data.batching import (
    IGNORE_INDEX,
    TOKEN_COUNT,
    Encoded,
    PackedCollator,
    PaddingCollator,
    adds_special_tokens,
    encode_examples,
    pack,
)
from slmops.data.formatting import Example


def test_prompt_tokens_are_masked_and_the_answer_ends_with_eos(tiny_tokenizer):
    example = Example("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "joyful")
    [row], stats = encode_examples([example], tiny_tokenizer, 64, what="train")
    prompt_ids = tiny_tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tiny_tokenizer("joyful", add_special_tokens=False)["input_ids"]
    eos = tiny_tokenizer.eos_token_id
    assert row.input_ids == prompt_ids + answer_ids + [eos]
    assert row.labels == [IGNORE_INDEX] * len(prompt_ids) + answer_ids + [eos]
    assert (stats.truncated, stats.dropped) == (0, 0)


def test_an_answer_that_already_ends_with_eos_gets_no_second_one(tiny_tokenizer):
    [row], _ = encode_examples(
        [Example("Q: x\nA: ", "yes<|im_end|>")], tiny_tokenizer, 64, what="t"
    )
    assert row.input_ids.count(tiny_tokenizer.eos_token_id) == 1


def test_text_field_examples_are_learned_whole(tiny_tokenizer):
    [row], _ = encode_examples(
        [Example("", "The capital of France is Paris.")], tiny_tokenizer, 64, what="t"
    )
    assert IGNORE_INDEX not in row.labels


def test_long_rows_are_cut_and_rows_without_answer_tokens_skipped(tiny_tokenizer):
    logged = []
    examples = [
        Example("short prompt ", "ok"),
        Example("a very long prompt " * 20, "lost"),
        Example("medium ", "an answer that is rather long " * 5),
    ]
    rows, stats = encode_examples(examples, tiny_tokenizer, 24, log=logged.append, what="train")
    assert len(rows) == 2
    assert all(len(row) <= 24 for row in rows)
    assert (stats.examples, stats.truncated, stats.dropped) == (3, 2, 1)
    assert stats.longest > 24
    assert "2 of 3 examples are longer than max_seq_len=24" in logged[0]
    assert "1 lost their whole answer" in logged[0]


def test_bos_is_left_to_a_template_that_already_starts_with_it(tiny_tokenizer):
    assert not adds_special_tokens(tiny_tokenizer, "<|im_start|>user\nhi")
    assert adds_special_tokens(tiny_tokenizer, "Phrase: hi")


def test_padding_collator_pads_to_the_longest_row_and_counts_real_tokens():
    rows = [Encoded([5, 6, 7], [-100, 6, 7]), Encoded([8], [8])]
    batch = PaddingCollator(pad_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch[TOKEN_COUNT] == 4
    fixed = PaddingCollator(pad_id=0, pad_to=8)(rows)
    assert fixed["input_ids"].shape == (2, 8)
    assert PaddingCollator(pad_id=0, multiple_of=8)(rows)["input_ids"].shape == (2, 8)


def test_pack_fills_bins_up_to_the_limit_without_losing_rows():
    rows = [Encoded([1] * n, [1] * n) for n in (7, 5, 4, 3, 3, 2, 1)]
    bins = pack(rows, 8)
    assert all(sum(len(row) for row in bin_) <= 8 for bin_ in bins)
    assert sorted(len(row) for bin_ in bins for row in bin_) == sorted(len(row) for row in rows)
    assert len(bins) == 4  # 25 tokens need at least 4 bins of 8


def test_packed_batch_restarts_positions_and_masks_each_first_token():
    bins = [[Encoded([1, 2, 3], [-100, 2, 3]), Encoded([4, 5], [4, 5])], [Encoded([6], [6])]]
    batch = PackedCollator(pad_id=0)(bins)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 5], [-100, -100, -100, -100, -100]]
    assert "attention_mask" not in batch
    assert batch[TOKEN_COUNT] == 6


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir, attn):
    """The logits of two packed examples equal those of each example run alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn).eval()
    model.config.use_cache = False
    first, second = [11, 12, 13, 14], [21, 22, 23]
    batch = PackedCollator(pad_id=0)([[Encoded(first, first), Encoded(second, second)]])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        alone_first = model(input_ids=torch.tensor([first])).logits
        alone_second = model(input_ids=torch.tensor([second])).logits
    torch.testing.assert_close(packed[:, :4], alone_first, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[:, 4:], alone_second, atol=1e-5, rtol=1e-4)
