"""Every data file is confined to the data roots when it is opened (symlinks resolved),
and sizes are checked before anything is read."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slmops.data.config import DataConfig
from slmops.data.loading import load_hub_splits, load_splits
from slmops.data.readers import SOURCE, read_file
from slmops.errors import ConfigError, DataError

ROW = {"phrase": "hello there", "tone": "joyful"}


def write_rows(path, count=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({**ROW, "n": n}) + "\n" for n in range(count)))
    return path


@pytest.fixture
def layout(tmp_path):
    """A data root holding a dataset folder, and a secret file outside the root."""
    root = tmp_path / "root"
    write_rows(root / "set" / "train.jsonl")
    write_rows(tmp_path / "outside" / "secret.jsonl")
    return root, tmp_path / "outside" / "secret.jsonl"


def load(root, **settings):
    settings.setdefault("text_template", "{phrase} => {tone}")
    return load_splits(DataConfig(data_roots=[str(root)], eval_fraction=0.25, **settings))


def test_a_link_inside_a_dataset_folder_that_leaves_the_roots_is_refused(layout):
    root, secret = layout
    assert len(load(root, data_name=str(root / "set")).train) == 3
    (root / "set" / "validation.jsonl").symlink_to(secret)
    with pytest.raises(DataError, match=r"validation.jsonl: resolves to .*secret.jsonl, outside"):
        load(root, data_name=str(root / "set"), eval_split="validation")


def test_a_linked_folder_named_in_data_files_is_refused_file_by_file(layout):
    root, secret = layout
    (root / "linked").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(DataError, match=r"secret.jsonl: resolves to .*outside the data roots"):
        load(root, data_files=[str(root / "linked")])


def test_a_glob_match_that_leaves_the_roots_is_refused(layout):
    root, secret = layout
    (root / "set" / "x.jsonl").symlink_to(secret)
    with pytest.raises(DataError, match=r"x.jsonl: resolves to .*, outside the data roots"):
        load(root, data_files=[str(root / "set" / "*.jsonl")])


def test_a_linked_parquet_file_is_refused(layout, tmp_path):
    root, _ = layout
    pq.write_table(pa.Table.from_pylist([ROW, ROW]), tmp_path / "outside" / "rows.parquet")
    (root / "set" / "rows.parquet").symlink_to(tmp_path / "outside" / "rows.parquet")
    with pytest.raises(DataError, match="rows.parquet: resolves to .*outside the data roots"):
        read_file(root / "set" / "rows.parquet", [root])


def test_links_inside_the_roots_are_read_and_keep_their_name(layout):
    root, _ = layout
    (root / "alias.jsonl").symlink_to(root / "set" / "train.jsonl")
    frame = read_file(root / "alias.jsonl", [root])
    assert len(frame) == 4 and set(frame[SOURCE]) == {str(root / "alias.jsonl")}


def test_without_roots_nothing_is_confined(layout):
    root, secret = layout
    assert len(read_file(secret)) == 4


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = write_rows(tmp_path / "big.jsonl", count=100)  # about 5 KB
    monkeypatch.setenv("SLMOPS_MAX_DATA_FILE_MB", "0.001")  # about 1 KB
    with pytest.raises(DataError) as info:
        read_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: the file is 0.0 MB, over the limit")
    assert "$SLMOPS_MAX_DATA_FILE_MB" in message
    monkeypatch.setenv("SLMOPS_MAX_DATA_FILE_MB", "1")
    assert len(read_file(path)) == 100


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_line_over_the_line_limit_names_file_and_line(tmp_path, monkeypatch, suffix):
    long = "x" * 3000
    if suffix == ".jsonl":
        lines = [json.dumps(ROW), json.dumps(ROW), json.dumps({**ROW, "phrase": long})]
    else:
        lines = ["phrase,tone", "a,b", f"{long},c"]
    path = tmp_path / f"rows{suffix}"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SLMOPS_MAX_DATA_LINE_MB", "0.002")  # about 2 KB
    with pytest.raises(
        DataError, match=rf"rows{suffix}: line 3: the line is .*SLMOPS_MAX_DATA_LINE"
    ):
        read_file(path)


def test_a_json_array_row_over_the_line_limit_names_its_line(tmp_path, monkeypatch):
    rows = [ROW, ROW, {**ROW, "phrase": "y" * 3000}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))  # one line: the row, not the line, is measured
    monkeypatch.setenv("SLMOPS_MAX_DATA_LINE_MB", "0.002")
    with pytest.raises(DataError, match=r"rows.json: line 1: the row is"):
        read_file(path)
    path.write_text(json.dumps(rows[:2]))
    assert len(read_file(path)) == 2


def test_a_parquet_file_is_limited_by_what_it_unpacks_to(tmp_path, monkeypatch):
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"phrase": "z" * 100_000 + str(n), "tone": "x"} for n in range(20)]),
        path,
    )
    assert path.stat().st_size < 100_000 < 20 * 100_000  # compresses well
    monkeypatch.setenv("SLMOPS_MAX_DATA_FILE_MB", "0.5")
    with pytest.raises(DataError, match=r"rows.parquet: the data uncompressed is 1.9 MB, over"):
        read_file(path)


@pytest.mark.parametrize("value", ["lots", "0", "-1", "inf", "nan"])
def test_a_bad_limit_setting_names_the_variable(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SLMOPS_MAX_DATA_FILE_MB", value)
    with pytest.raises(ConfigError, match=r"\$SLMOPS_MAX_DATA_FILE_MB=.*positive number"):
        read_file(write_rows(tmp_path / "rows.jsonl"))


def test_a_quoted_csv_cell_spanning_short_lines_is_bound_by_the_line_limit(tmp_path, monkeypatch):
    cell = "\n".join(["short line"] * 400)  # about 4.4 KB over 400 lines
    path = tmp_path / "rows.csv"
    path.write_text(f'phrase,tone\na,b\n"{cell}",c\n')
    monkeypatch.setenv("SLMOPS_MAX_DATA_LINE_MB", "0.002")
    with pytest.raises(DataError, match=r"rows.csv: line \d+: malformed CSV \(field larger"):
        read_file(path)
    monkeypatch.setenv("SLMOPS_MAX_DATA_LINE_MB", "1")
    assert read_file(path)["phrase"].tolist() == ["a", cell]


def test_a_file_whose_name_looks_like_a_pattern_is_read_as_it_is(tmp_path):
    """The plan hands the readers concrete files; one named data[1].jsonl is not a glob."""
    literal = write_rows(tmp_path / "data[1].jsonl", count=2)
    write_rows(tmp_path / "data1.jsonl", count=5)
    config = DataConfig(data_files=[str(literal)], text_template="{phrase}", eval_fraction=0.5)
    splits = load_splits(config)
    assert len(splits.train) + len(splits.eval) == 2


def test_a_datasets_dataset_over_the_limit_is_refused_before_pandas(tmp_path, monkeypatch):
    """datasets loads a local folder as it loads a hub id (offline here): the same check."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    write_rows(tmp_path / "set" / "train.jsonl", count=200)  # about 10 KB of Arrow data
    monkeypatch.setenv("SLMOPS_MAX_DATA_FILE_MB", "0.002")
    with pytest.raises(DataError, match=r"data_name '.*set': the dataset is .* over the limit"):
        load_hub_splits(str(tmp_path / "set"), None)
    monkeypatch.setenv("SLMOPS_MAX_DATA_FILE_MB", "1")
    assert len(load_hub_splits(str(tmp_path / "set"), None)["train"]) == 200
