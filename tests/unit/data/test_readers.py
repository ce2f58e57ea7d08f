"""Local file readers: every format, the line of each row, and each bad-input error."""

import json

import pandas as pd
import pytest

from slmops.data.readers import LINE, SOURCE, expand_paths, folder_files, read_file
from slmops.errors import DataError


def test_jsonl_rows_keep_their_line_numbers_and_skip_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": "x"}\n\n{"a": "y", "b": 2}\n', encoding="utf-8")
    frame = read_file(path)
    assert frame["a"].tolist() == ["x", "y"]
    assert frame[LINE].tolist() == [1, 3]
    assert set(frame[SOURCE]) == {str(path)}
    assert pd.isna(frame.loc[0, "b"]) and frame.loc[1, "b"] == 2


def test_malformed_jsonl_line_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": "x"}\n{"a": "y",}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2, column 11: malformed JSON"):
        read_file(path)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": "x"}\n["a", "b"]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: expected a JSON object with named fields"):
        read_file(path)


def test_json_array_rows_know_the_line_they_start_on(tmp_path):
    rows = [{"input": "q1", "output": "a1"}, {"input": "q2", "output": "a2"}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    frame = read_file(path)
    assert frame["input"].tolist() == ["q1", "q2"]
    assert frame[LINE].tolist() == [2, 6]


def test_json_array_line_numbers_stay_right_over_many_rows(tmp_path):
    """Lines are counted incrementally (linear time); each row still knows its line."""
    rows = [{"input": f"q{n}", "output": "a\nb" * (n % 3)} for n in range(500)]
    path = tmp_path / "many.json"
    path.write_text("[\n" + ",\n\n".join(json.dumps(row, indent=1) for row in rows) + "\n]")
    frame = read_file(path)
    text_lines = path.read_text().splitlines()
    assert len(frame) == 500
    for number, line in zip(frame["input"], frame[LINE], strict=True):
        assert text_lines[line - 1] == "{" and f'"{number}"' in text_lines[line]


@pytest.mark.parametrize(("name", "line"), [("deep.jsonl", 2), ("deep.json", 3)])
def test_a_row_nested_too_deeply_names_file_and_line(tmp_path, name, line):
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text('{"a": "x"}\n{"a": ' + deep + "}\n")
    else:
        path.write_text('[\n{"a": "x"},\n{"a": ' + deep + "}\n]")
    with pytest.raises(DataError, match=rf"{name}: line {line}: the row nests .* too deeply"):
        read_file(path)


def test_json_file_holding_json_lines_is_accepted(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text('{"a": "x"}\n{"a": "y"}\n', encoding="utf-8")
    assert read_file(path)["a"].tolist() == ["x", "y"]


def test_a_pretty_printed_object_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": [{"a": "x"}], "version": 1}, indent=2))
    with pytest.raises(DataError, match="its 'data' field holds a list: make that list the whole"):
        read_file(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1},\n {"a": 2}\n {"a": 3}]', r"line 3, column 2: malformed JSON \(Expecting ','"),
        ('[{"a": 1},\n {"a": ]', r"line 2, column 8: malformed JSON"),
        ('[{"a": 1}', "line 1, column 10: malformed JSON"),
        ('[{"a": 1}] trailing', "line 1: unexpected text after the closing"),
    ],
)
def test_malformed_json_array(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_file(path)


def test_csv_keeps_strings_and_multiline_cells_know_their_first_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('phrase,tone\nNA,sad\n"two\nlines",joyful\n,angry\n', encoding="utf-8")
    frame = read_file(path)
    assert frame["phrase"].tolist() == ["NA", "two\nlines", ""]
    assert frame[LINE].tolist() == [2, 3, 5]


def test_tsv_uses_tabs(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("a\tb\nx, y\tz\n", encoding="utf-8")
    assert read_file(path).loc[0, "a"] == "x, y"


def test_csv_row_with_extra_fields_is_named(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("phrase,tone\nhello there,joyful\nwell, well,angry\n", encoding="utf-8")
    with pytest.raises(DataError, match="ragged.csv: line 3: 3 fields, but the header has 2"):
        read_file(path)


def test_parquet_rows_are_numbered(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a", "b", "c"]}).to_parquet(path)
    frame = read_file(path)
    assert frame["text"].tolist() == ["a", "b", "c"]
    assert frame[LINE].tolist() == [1, 2, 3]


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="d.parquet: not a readable Parquet file"):
        read_file(path)


def test_non_utf8_file_names_line_column_and_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"a": "ok"}\n{"a": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2, column 11: not UTF-8 \(byte 0xe9\).*UTF-8"):
        read_file(path)


def test_utf8_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa,b\nx,y\n".encode())
    assert list(read_file(path).columns[:2]) == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "missing.jsonl: no such file"),
        ("empty.jsonl", "", "empty.jsonl: the file is empty"),
        ("blank.jsonl", "\n\n", "blank.jsonl: no rows found"),
        ("empty.json", "[]", "empty.json: no rows found"),
        ("header.csv", "a,b\n", "header.csv: no rows found"),
        ("data.txt", "hello", r"unsupported file type \.txt; use one of"),
    ],
)
def test_unusable_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_file(path)


def test_folder_files_are_grouped_by_split_name(tmp_path):
    for name in ("train.jsonl", "validation.jsonl", "test/part-0.jsonl", "notes/.hidden.json"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"a": "x"}\n', encoding="utf-8")
    grouped = folder_files(tmp_path)
    assert {split: [p.name for p in paths] for split, paths in grouped.items()} == {
        "train": ["train.jsonl"],
        "validation": ["validation.jsonl"],
        "test": ["part-0.jsonl"],
    }


def test_folder_without_split_names_is_all_train(tmp_path):
    for name in ("a.jsonl", "b.csv"):
        (tmp_path / name).write_text("x\n1\n" if name.endswith("csv") else '{"x": "1"}\n')
    assert list(folder_files(tmp_path)) == ["train"]
    assert len(folder_files(tmp_path)["train"]) == 2


def test_folder_without_data_files(tmp_path):
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(DataError, match="no data files in this folder"):
        folder_files(tmp_path)


def test_glob_patterns_expand_and_must_match(tmp_path):
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text('{"x": "1"}\n')
    assert [p.name for p in expand_paths([str(tmp_path / "*.jsonl")])] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(DataError, match="the pattern matches no file"):
        expand_paths([str(tmp_path / "*.parquet")])
