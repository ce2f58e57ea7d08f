"""`slmops validate` as a user runs it: the demo data with the bundled model's tokenizer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TONES = ROOT / "include" / "data" / "phrase_tones.jsonl"
INSTRUCTIONS = ROOT / "include" / "data" / "instructions.json"
# The reference guide's Example 1 template, as typed in its shell command.
LLAMA3 = (
    r"<|start_header_id|>user<|end_header_id|>\n{phrase}<|eot_id|>"
    r"<|start_header_id|>assistant<|end_header_id|>\n{tone}"
)


def slmops_validate(*args):
    command = [sys.executable, "-m", "slmops", "validate", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_demo_tones_pass_the_tone_suite(tmp_path):
    result = slmops_validate(
        "--data_files", TONES, "--text_template", LLAMA3, "--suite", "phrase_tones", "-o", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "validation suite 'phrase_tones': PASSED - 19 checks on 567 train + 63 eval rows" in (
        result.stderr
    )
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["data"]["eval_origin"] == "held_out"
    tokens = next(c for c in report["checks"] if c["name"] == "token_length")
    assert tokens["passed"] and "longest:" in tokens["explanation"]


def test_demo_instructions_pass_with_the_guide_template_and_the_chat_template():
    template = r"User: {input}\nAssistant: {output}"
    for format_args in (["--text_template", template], ["--use_chat_template"]):
        result = slmops_validate(
            "--data_files", INSTRUCTIONS, *format_args, "--suite", "instructions"
        )
        assert result.returncode == 0, result.stderr
        assert "validation suite 'instructions': PASSED" in result.stderr


def test_a_copy_with_injected_faults_fails_naming_each_fault_and_row(tmp_path):
    rows = [json.loads(line) for line in TONES.read_text().splitlines()]
    train, evaluation = rows[:560], rows[560:]
    train[4]["phrase"] = None  # line 5: null
    train[9]["tone"] = "happy"  # line 10: unknown label
    train[20] = dict(train[19])  # lines 20 and 21: duplicates
    train[30]["phrase"] = "and then " * 80  # line 31: over-long (chars and tokens)
    evaluation[2] = dict(train[100])  # validation.jsonl line 3: leaks from train line 101
    folder = tmp_path / "faulty"
    folder.mkdir()
    for name, part in (("train.jsonl", train), ("validation.jsonl", evaluation)):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in part))
    out = tmp_path / "out"
    result = slmops_validate(
        "--data_name", folder, "--eval_split", "validation", "--text_template", LLAMA3,
        "--suite", "phrase_tones", "-o", out,
    )  # fmt: skip
    assert result.returncode == 1
    err = result.stderr
    assert "slmops validate: error: validation suite 'phrase_tones' failed" in err
    expected = {
        "not_null[phrase]": ["train.jsonl:5"],
        "labels_in_set[tone]": ["train.jsonl:10"],
        "no_duplicates": ["train.jsonl:20", "train.jsonl:21"],
        "text_length[phrase]": ["train.jsonl:31"],
        "token_length": ["train.jsonl:31"],
        "no_leakage": ["validation.jsonl:3"],
    }
    report = json.loads((out / "validation.json").read_text())
    failed = {c["name"]: c for c in report["checks"] if not c["passed"]}
    for name, locations in expected.items():
        assert f"- {name}: " in err
        shown = [row["location"] for row in failed[name]["rows"]]
        assert [loc.split("/")[-1] for loc in shown] == locations, name
    # The unknown label is also a class with one row; nothing else fails.
    assert set(failed) == {*expected, "min_rows_per_class[tone]"}
