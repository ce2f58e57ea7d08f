"""`slmops validate`: summary and exit codes, and a clear error for every kind of bad input."""

import json

import pytest

from slmops.cli import main
from slmops.testing import tone_rows

TEMPLATE = r"<|im_start|>user\n{phrase}<|im_end|>\n<|im_start|>assistant\n{tone}"


def validate(model, *args):
    return main(["validate", "-m", str(model), "--text_template", TEMPLATE, *map(str, args)])


def test_valid_data_prints_the_summary_and_writes_the_report(
    tiny_model_dir, write_jsonl, tmp_path, capsys
):
    path = write_jsonl(tone_rows(60))
    out = tmp_path / "report"
    code = validate(tiny_model_dir, "--data_files", path, "--label_field", "tone", "-o", out)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "held out 6 of 60 rows for evaluation (10%, stratified by 'tone', seed 42)" in err
    assert "validation suite 'default': PASSED - " in err
    assert "ok   min_rows[train]: 54 rows (need at least 10)" in err
    report = json.loads((out / "validation.json").read_text())
    assert report["passed"] and report["data"]["label_column"] == "tone"


def test_failed_suite_exits_1_naming_each_check(tiny_model_dir, write_jsonl, tmp_path, capsys):
    rows = tone_rows(60)
    rows[9]["phrase"] = ""
    rows.append(dict(rows[0]))
    path = write_jsonl(rows, "faulty.jsonl")
    splits = ["--train_split", "train[:50]", "--eval_split", "train[50:]"]
    code = validate(tiny_model_dir, "--data_files", path, *splits, "-o", tmp_path)
    err = capsys.readouterr().err
    assert code == 1
    assert "slmops validate: error: validation suite 'default' failed" in err
    assert "- not_blank[phrase]: 1 of 61 rows are empty or only whitespace" in err
    assert "faulty.jsonl:10: ''" in err
    assert "- no_leakage: 1 of 11 rows of eval also appear in train" in err
    assert json.loads((tmp_path / "validation.json").read_text())["passed"] is False


GOOD = b'{"phrase": "a", "tone": "b"}\n' * 5
BAD_INPUT = {
    "malformed JSONL line": (
        b'{"phrase": "a", "tone": "b"}\n{"phrase": "c" "tone": "d"}\n',
        [],
        "data.jsonl: line 2, column 16: malformed JSON",
    ),
    "non-UTF-8": (b'{"phrase": "\xff"}\n', [], "line 1, column 13: not UTF-8 (byte 0xff)"),
    "empty file": (b"", [], "data.jsonl: the file is empty"),
    "missing file": (None, [], "data.jsonl: no such file"),
    "unknown split": (
        GOOD,
        ["--eval_split", "validation"],
        "eval_split 'validation': unknown split; the data has: train",
    ),
    "placeholder naming no column": (
        GOOD,
        ["--text_template", "{phrase} {mood}"],
        "{mood}: no such column in the data",
    ),
    "flag out of range": (
        GOOD,
        ["--eval_fraction", "0.9"],
        "--eval_fraction: Input should be less than or equal to 0.5",
    ),
    "unknown suite": (GOOD, ["--suite", "nope"], "suite 'nope': no such suite"),
    "token budget out of range": (
        GOOD,
        ["--max_seq_len", "4"],
        "--max_seq_len: Input should be greater than or equal to 8",
    ),
}


@pytest.mark.parametrize(("content", "extra", "message"), BAD_INPUT.values(), ids=BAD_INPUT)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    tiny_model_dir, tmp_path, capsys, content, extra, message
):
    path = tmp_path / "data.jsonl"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    code = validate(tiny_model_dir, "--data_files", path, "-o", out, *extra)
    err = capsys.readouterr().err
    assert code == 1
    assert "slmops validate: error: " in err and message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_max_seq_len_flag_overrides_the_suite(tiny_model_dir, write_jsonl, tmp_path, capsys):
    path = write_jsonl(tone_rows(60))
    assert validate(tiny_model_dir, "--data_files", path, "--max_seq_len", "9", "-o", tmp_path) == 1
    assert "exceed max_seq_len 9 tokens" in capsys.readouterr().err
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["data"]["max_seq_len"] == 9 and report["suite"] == "default"


def test_flags_carry_the_config_descriptions(capsys):
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    out = capsys.readouterr().out
    assert "--text_template TEXT_TEMPLATE" in out
    assert "(default: 0.1)" in " ".join(out.split())
    assert "--use_chat_template" in out and "--suite SUITE" in out


def test_a_finetune_run_config_supplies_the_data_settings(
    tiny_model_dir, write_jsonl, tmp_path, capsys
):
    path = write_jsonl(tone_rows(60))
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndata_files: {path}\nlabel_field: tone\n"
        f"text_template: {json.dumps(TEMPLATE)}\nmethod: qlora\nlora_r: 8\nmax_seq_len: 96\n"
    )
    code = main(["validate", "--config", str(run_yaml), "-o", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "stratified by 'tone'" in err
    report = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert report["data"]["max_seq_len"] == 96
