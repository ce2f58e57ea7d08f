"""Great Expectations validation: each check passes on clean data and names the rows of a fault."""

import json

import pytest

from slmops.data.config import DataConfig
from slmops.data.loading import DataError
from slmops.errors import FormatError, ValidationFailed
from slmops.testing import TONES, tone_rows
from slmops.validation.runner import validate
from slmops.validation.suites import SuiteConfig

TEMPLATE = "{phrase} => {tone}"
SUITE = SuiteConfig(
    name="tones",
    label_column="tone",
    labels=list(TONES),
    max_seq_len=256,
    min_rows=20,
    min_eval_rows=3,
    min_rows_per_class=3,
    column_lengths={"phrase": {"min_chars": 5, "max_chars": 200}},
)


def write_folder(tmp_path, train, evaluation):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name, rows in (("train.jsonl", train), ("validation.jsonl", evaluation)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run(tmp_path, tokenizer, train, evaluation, suite=SUITE, **settings):
    """The report, whether the suite passed or failed."""
    settings.setdefault("text_template", TEMPLATE)
    folder = write_folder(tmp_path, train, evaluation)
    data = DataConfig(data_name=str(folder), eval_split="validation", **settings)
    try:
        return validate(data, suite, tokenizer, output_dir=tmp_path / "out", log=lambda m: None)
    except ValidationFailed as failed:
        return failed.report


def check(report, name):
    return next(c for c in report.checks if c.name == name)


def failed(report):
    return sorted(c.name for c in report.checks if not c.passed)


@pytest.fixture
def clean():
    rows = tone_rows(72)
    return rows[:60], rows[60:]


def test_clean_data_passes_every_check_and_writes_the_report(tmp_path, tiny_tokenizer, clean):
    report = run(tmp_path, tiny_tokenizer, *clean)
    assert report.passed, report.summary()
    names = [c.name for c in report.checks]
    for expected in (
        "column_present[phrase]", "not_null[tone]", "string_type[phrase]", "not_blank[phrase]",
        "text_length[phrase]", "formattable", "labels_in_set[tone]", "labels_all_present[tone]",
        "min_rows_per_class[tone]", "no_duplicates", "no_leakage", "token_length",
        "min_rows[train]", "min_rows[eval]",
    ):  # fmt: skip
        assert expected in names
    saved = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert saved["passed"] is True and saved["suite"] == "tones"
    assert saved["data"]["train_rows"] == 60 and saved["data"]["eval_rows"] == 12
    assert len(saved["data"]["fingerprint"]) == 64
    assert check(report, "min_rows[train]").observed == 60
    assert "validation suite 'tones': PASSED - " in report.summary()


def test_nulls_are_found_with_their_lines(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train[6]["phrase"] = None
    report = run(tmp_path, tiny_tokenizer, train, evaluation)
    result = check(report, "not_null[phrase]")
    assert not result.passed and result.unexpected_count == 1
    assert result.rows[0]["line"] == 7 and result.rows[0]["location"].endswith("train.jsonl:7")
    assert result.explanation == "1 of 72 rows have no value"


def test_blank_and_non_string_values(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train[0]["phrase"] = "   \t"
    evaluation[1]["phrase"] = 12345
    report = run(tmp_path, tiny_tokenizer, train, evaluation)
    assert check(report, "not_blank[phrase]").rows[0]["line"] == 1
    typed = check(report, "string_type[phrase]")
    assert not typed.passed and typed.rows[0]["value"] == 12345
    assert typed.rows[0]["split"] == "eval"
    assert typed.explanation == "1 of 72 rows hold a non-string value"


def test_a_column_of_numbers_is_named_by_its_type(tmp_path, tiny_tokenizer, clean):
    # A column of one pandas dtype is checked as a whole: no row counts to report.
    report = run(tmp_path, tiny_tokenizer, *clean)
    explanation = check(report, "string_type[phrase]").explanation
    assert explanation == "every value is text (column type str)"
    train, evaluation = clean
    for number, row in enumerate(train + evaluation):
        row["phrase"] = number
    typed = check(run(tmp_path, tiny_tokenizer, train, evaluation), "string_type[phrase]")
    assert not typed.passed
    assert typed.explanation == (
        "every value is of type int64, not text: quote the values in the file"
    )


def test_unknown_labels_and_missing_labels(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    renamed = [row for row in train if row["tone"] == "neutral"]
    for row in renamed:
        row["tone"] = "bored"
    report = run(tmp_path, tiny_tokenizer, train, evaluation)
    outside = check(report, "labels_in_set[tone]")
    assert outside.unexpected_count == len(renamed) > 5 and {r["value"] for r in outside.rows} == {
        "bored"
    }
    assert len(outside.rows) == 5  # at most five rows shown
    missing = check(report, "labels_all_present[tone]")
    assert not missing.passed and missing.explanation == "no training rows for: neutral"


def test_too_few_rows_of_a_class(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train = [r for r in train if r["tone"] != "sad"][:40] + [
        r for r in train if r["tone"] == "sad"
    ][:2]
    report = run(tmp_path, tiny_tokenizer, train, evaluation)
    result = check(report, "min_rows_per_class[tone]")
    assert not result.passed and result.unexpected_count == 2
    assert "its label has 2 training row(s)" in result.rows[0]["value"]


def test_length_bounds_per_column(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train[3]["phrase"] = "Hey"
    train[4]["phrase"] = "x" * 201
    result = check(run(tmp_path, tiny_tokenizer, train, evaluation), "text_length[phrase]")
    assert [r["line"] for r in result.rows] == [4, 5]
    assert result.threshold == {"min_chars": 5, "max_chars": 200}


def test_duplicates_after_case_and_space_folding(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train.append(
        {"phrase": train[0]["phrase"].upper().replace(" ", "  "), "tone": train[0]["tone"]}
    )
    report = run(tmp_path, tiny_tokenizer, train, evaluation)
    result = check(report, "no_duplicates")
    assert [r["line"] for r in result.rows] == [1, 61]
    assert failed(report) == ["no_duplicates"]


def test_duplicate_threshold_allows_a_share(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train.append(dict(train[0]))
    suite = SUITE.model_copy(update={"max_duplicate_fraction": 0.05})
    assert run(tmp_path, tiny_tokenizer, train, evaluation, suite=suite).passed


def test_leakage_compares_inputs_across_splits(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    evaluation[2] = {"phrase": train[10]["phrase"], "tone": "sad"}  # same input, other label
    report = run(tmp_path, tiny_tokenizer, train, evaluation)
    result = check(report, "no_leakage")
    assert not result.passed and result.unexpected_count == 1
    assert result.rows[0]["location"].endswith("validation.jsonl:3")
    assert failed(report) == ["no_leakage"]
    off = SUITE.model_copy(update={"check_leakage": False})
    assert run(tmp_path, tiny_tokenizer, train, evaluation, suite=off).passed


def test_token_budget_with_a_truncation_threshold(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    train[8]["phrase"] = "a long phrase " * 12
    tight = SUITE.model_copy(update={"max_seq_len": 40})
    result = check(run(tmp_path, tiny_tokenizer, train, evaluation, suite=tight), "token_length")
    assert not result.passed and result.rows[0]["line"] == 9
    assert result.rows[0]["value"].split(" tokens:")[0].isdigit()
    lenient = tight.model_copy(update={"max_truncated_fraction": 0.05})
    assert check(
        run(tmp_path, tiny_tokenizer, train, evaluation, suite=lenient), "token_length"
    ).passed


def test_minimum_rows_per_split(tmp_path, tiny_tokenizer, clean):
    train, evaluation = clean
    report = run(tmp_path, tiny_tokenizer, train[:15], evaluation[:2])
    assert check(report, "min_rows[train]").explanation == "15 rows (need at least 20)"
    assert check(report, "min_rows[eval]").explanation == "2 rows (need at least 3)"


def test_required_column_missing_from_the_data(tmp_path, tiny_tokenizer, clean):
    suite = SUITE.model_copy(update={"required_columns": ["source"]})
    report = run(tmp_path, tiny_tokenizer, *clean, suite=suite)
    assert failed(report) == ["column_present[source]"]
    assert check(report, "column_present[source]").explanation == "column 'source' is missing"


def test_malformed_chat_messages_are_reported_per_row(tmp_path, tiny_tokenizer):
    chats = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(30)
    ]
    chats[5]["messages"] = [{"role": "user", "content": "no answer"}]
    suite = SuiteConfig(name="chat", min_rows=5)
    report = run(
        tmp_path,
        tiny_tokenizer,
        chats[:25],
        chats[25:],
        suite=suite,
        text_template=None,
        use_chat_template=True,
    )
    result = check(report, "formattable")
    assert not result.passed and result.rows[0]["line"] == 6
    assert "must be the assistant's answer" in result.rows[0]["value"]


def test_failure_message_lists_each_failed_check_and_the_report_is_kept(
    tmp_path, tiny_tokenizer, clean
):
    train, evaluation = clean
    train[0]["tone"] = "happy"
    evaluation[0] = dict(train[5])
    folder = write_folder(tmp_path, train, evaluation)
    data = DataConfig(data_name=str(folder), eval_split="validation", text_template=TEMPLATE)
    with pytest.raises(ValidationFailed) as info:
        validate(data, SUITE, tiny_tokenizer, output_dir=tmp_path / "out", log=lambda m: None)
    message = str(info.value)
    # The unknown label is also a class with a single training row.
    assert message.startswith("validation suite 'tones' failed 3 check(s):")
    assert "- labels_in_set[tone]: 1 of 72 rows have a label outside" in message
    assert "train.jsonl:1: 'happy'" in message
    assert "- no_leakage: 1 of 12 rows of eval also appear in train" in message
    saved = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert saved["passed"] is False
    assert sorted(c["name"] for c in saved["checks"] if not c["passed"]) == [
        "labels_in_set[tone]",
        "min_rows_per_class[tone]",
        "no_leakage",
    ]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"text_template": "{phrse} => {tone}"}, FormatError, r"\{phrse\}: no such column"),
        ({"eval_split": "test"}, DataError, "unknown split"),
        ({"train_split": "train[:0]"}, DataError, "selects no rows"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, tiny_tokenizer, clean, settings, error, message):
    folder = write_folder(tmp_path, *clean)
    values = {"data_name": str(folder), "eval_split": "validation", "text_template": TEMPLATE}
    data = DataConfig(**{**values, **settings})
    with pytest.raises(error, match=message):
        validate(data, SUITE, tiny_tokenizer, output_dir=tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()
