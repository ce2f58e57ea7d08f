"""Prompt/completion formatting: the reference guide's templates, text fields, chat."""

import pytest

from slmops.data.config import DataConfig
from slmops.data.formatting import RowFormatter
from slmops.errors import FormatError

# The three templates of the reference guide, exactly as typed in its shell examples
# (inside double quotes a shell passes \n as two characters).
LLAMA3 = (
    r"<|start_header_id|>user<|end_header_id|>\n{phrase}<|eot_id|>"
    r"<|start_header_id|>assistant<|end_header_id|>\n{tone}"
)
USER_ASSISTANT = r"User: {input}\nAssistant: {output}"
TINY_CODES = (
    r"### Language: {programming_language} \n### Question: {prompt} \n### Answer: {response}"
)


def formatter(tokenizer=None, **settings):
    return RowFormatter(DataConfig(data_files="d.jsonl", **settings), tokenizer)


def test_llama3_header_template():
    example = formatter(text_template=LLAMA3).format(
        {"phrase": "Thanks a lot!", "tone": "grateful"}
    )
    assert example.prompt == (
        "<|start_header_id|>user<|end_header_id|>\nThanks a lot!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n"
    )
    assert example.completion == "grateful"


def test_user_assistant_template():
    example = formatter(text_template=USER_ASSISTANT).format({"input": "Hi?", "output": "Hello."})
    assert (example.prompt, example.completion) == ("User: Hi?\nAssistant: ", "Hello.")
    assert example.text == "User: Hi?\nAssistant: Hello."


def test_tiny_codes_template():
    row = {"programming_language": "Python", "prompt": "Add 1 and 2", "response": "print(1 + 2)"}
    example = formatter(text_template=TINY_CODES).format(row)
    assert example.prompt == "### Language: Python \n### Question: Add 1 and 2 \n### Answer: "
    assert example.completion == "print(1 + 2)"


def test_completion_field_moves_the_cut_and_literal_braces_survive():
    fmt = formatter(text_template="{{json}} Q: {q} A: {a} ({src})", completion_field="a")
    example = fmt.format({"q": "why", "a": "because", "src": "faq"})
    assert example.prompt == "{json} Q: why A: "
    assert example.completion == "because (faq)"


def test_non_string_values_are_rendered_and_missing_ones_raise_or_blank():
    fmt = formatter(text_template="{n} -> {label}")
    assert fmt.format({"n": 3, "label": "odd"}).text == "3 -> odd"
    with pytest.raises(FormatError, match="column 'label' has no value"):
        fmt.format({"n": 3, "label": None})
    assert fmt.format({"n": 3, "label": float("nan")}, strict=False).completion == ""


def test_text_field_has_no_prompt():
    example = formatter(text_field="text").format({"text": "all of it"})
    assert (example.prompt, example.completion) == ("", "all of it")


def test_columns_reports_placeholders_that_name_no_column():
    fmt = formatter(text_template="{phrse} => {tone}")
    with pytest.raises(FormatError, match=r"placeholder \{phrse\}: no such column.*phrase, tone"):
        fmt.columns(["tone", "phrase"])
    assert formatter(text_field="body").columns(["body", "x"]) == ["body"]


def test_chat_template_from_input_output_columns(tiny_tokenizer):
    fmt = formatter(tiny_tokenizer, use_chat_template=True, system_prompt="Be brief.")
    assert fmt.columns(["input", "output"]) == ["input", "output"]
    example = fmt.format({"input": "Hi?", "output": "Hello."})
    assert example.prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert example.completion == "Hello.<|im_end|>\n"


def test_chat_template_from_a_messages_column(tiny_tokenizer):
    fmt = formatter(tiny_tokenizer, use_chat_template=True)
    assert fmt.columns(["messages"]) == ["messages"]
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    example = fmt.format({"messages": messages})
    assert example.prompt.endswith("<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_start|>assistant\n4<|im_end|>" in example.prompt
    assert example.completion == "6<|im_end|>\n"


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list of messages"),
        ("hello", "non-empty list of messages"),
        ([{"role": "user"}], "needs a 'role' and a 'content'"),
        ([{"role": "user", "content": "hi"}], "must be the assistant's answer, not 'user'"),
    ],
)
def test_malformed_messages(tiny_tokenizer, messages, message):
    with pytest.raises(FormatError, match=message):
        formatter(tiny_tokenizer, use_chat_template=True).format({"messages": messages})


def test_chat_template_needs_a_tokenizer_with_a_template(tiny_tokenizer):
    with pytest.raises(FormatError, match="needs the model's tokenizer"):
        formatter(None, use_chat_template=True)
    bare = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer)
    with pytest.raises(FormatError, match="has no chat template; use --text_template"):
        formatter(bare, use_chat_template=True)
    with pytest.raises(FormatError, match="needs a 'messages' column, or input"):
        formatter(tiny_tokenizer, use_chat_template=True).columns(["question", "answer"])
