from collections import Counter

from slmops.testing import TONES, build_tokenizer, instruction_rows, tone_rows


def test_tone_rows_are_balanced_and_distinct():
    rows = tone_rows(60)
    assert len({row["phrase"] for row in rows}) == 60
    assert Counter(row["tone"] for row in rows) == {tone: 10 for tone in TONES}
    assert tone_rows(60) == rows  # deterministic


def test_instruction_rows_are_distinct():
    rows = instruction_rows(24)
    assert len({row["input"] for row in rows}) == 24
    assert all(row["output"] for row in rows)


def test_tokenizer_round_trips_and_renders_chatml():
    tokenizer = build_tokenizer()
    text = "Unseen wörds 123 — still encodable."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None


def test_tiny_model_folder_contents(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert (tiny_model_dir / "model.safetensors").stat().st_size < 2_000_000
