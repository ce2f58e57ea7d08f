"""Loading, splitting and preparing data: sources, slices, held-out split, caps, errors."""

import json
from collections import Counter

import pandas as pd
import pytest

from slmops.data.config import DataConfig
from slmops.data.loading import load_hub_splits, load_splits, prepare
from slmops.data.readers import LINE
from slmops.errors import DataError, FormatError
from slmops.testing import TONES, tone_rows


def config(path, **settings):
    settings.setdefault("text_template", "{phrase} => {tone}")
    return DataConfig(data_files=str(path), **settings)


@pytest.fixture
def tones(write_jsonl):
    return write_jsonl(tone_rows(120), "tones.jsonl")


def test_slices_in_datasets_syntax(tones):
    splits = load_splits(config(tones, train_split="train[:100]", eval_split="train[100:110]"))
    assert len(splits.train) == 100 and len(splits.eval) == 10
    assert splits.eval_origin == "split"
    assert splits.eval[LINE].tolist() == list(range(101, 111))
    splits = load_splits(config(tones, train_split="train[:50%]", eval_split="train[-10%:]"))
    assert (len(splits.train), len(splits.eval)) == (60, 12)


def test_a_slice_past_the_end_is_said(tones):
    notes = []
    splits = load_splits(config(tones, train_split="train[:500]"), log=notes.append)
    assert len(splits.train) + len(splits.eval) == 120
    assert any("asks for rows up to 500 but split 'train' has 120" in note for note in notes)


def test_an_eval_split_inside_the_train_split_is_warned_about(tones):
    notes = []
    load_splits(config(tones, eval_split="train[100:110]"), log=notes.append)
    assert (
        "warning: 10 of 10 eval rows are also training rows: eval_split 'train[100:110]' "
        "overlaps train_split 'train'; narrow --train_split (e.g. \"train[:4096]\")"
    ) in notes
    notes.clear()
    load_splits(
        config(tones, train_split="train[:100]", eval_split="train[100:]"), log=notes.append
    )
    assert not any("overlaps" in note for note in notes)


def test_an_empty_eval_split_is_an_error(tones):
    with pytest.raises(DataError, match=r"eval_split 'train\[500:\]' selects no rows"):
        load_splits(config(tones, train_split="train[:100]", eval_split="train[500:]"))


def test_unknown_split_lists_the_ones_there_are(tones):
    with pytest.raises(DataError, match=r"eval_split 'validation\[:5\]': unknown split; the data"):
        load_splits(config(tones, eval_split="validation[:5]"))


def test_held_out_split_is_stratified_and_reproducible(tones):
    notes = []
    settings = {"label_field": "tone", "eval_fraction": 0.2}
    first = load_splits(config(tones, **settings), log=notes.append)
    assert (len(first.train), len(first.eval)) == (96, 24)
    assert Counter(first.eval["tone"]) == dict.fromkeys(TONES, 4)
    assert "held out 24 of 120 rows for evaluation (20%, stratified by 'tone', seed 42)" in notes
    again = load_splits(config(tones, **settings))
    assert again.eval[LINE].tolist() == first.eval[LINE].tolist()
    other = load_splits(config(tones, seed=7, **settings))
    assert other.eval[LINE].tolist() != first.eval[LINE].tolist()
    assert set(first.train[LINE]).isdisjoint(first.eval[LINE])


def test_held_out_split_without_labels_is_random(tones):
    splits = load_splits(config(tones))
    assert (len(splits.train), len(splits.eval)) == (108, 12)
    assert splits.eval_origin == "held_out"


def test_a_label_with_one_row_cannot_be_stratified(write_jsonl):
    rows = tone_rows(12) + [{"phrase": "Alone here.", "tone": "lonely"}]
    path = write_jsonl(rows)
    with pytest.raises(DataError, match="label\\(s\\) 'lonely' have a single row"):
        load_splits(config(path, label_field="tone"))
    with pytest.raises(DataError, match="label_field 'mood' names no column"):
        load_splits(config(path, label_field="mood"))


def test_every_row_is_used_unless_max_samples_says_otherwise(write_jsonl):
    path = write_jsonl(tone_rows(1200))
    splits = load_splits(config(path, eval_split="train[1100:]", train_split="train[:1100]"))
    assert len(splits.train) == 1100  # no hidden cap (Olive samples 256 rows silently)
    notes = []
    capped = load_splits(
        config(path, max_samples=300, max_eval_samples=20, eval_fraction=0.2), log=notes.append
    )
    assert (len(capped.train), len(capped.eval)) == (300, 20)
    assert "using the first 300 of 960 training rows (--max_samples 300)" in notes
    assert "using the first 20 of 240 eval rows (--max_eval_samples 20)" in notes


def test_several_files_and_formats_are_one_train_split(tmp_path, write_jsonl):
    first = write_jsonl(tone_rows(30), "a.jsonl")
    second = tmp_path / "b.csv"
    pd.DataFrame(tone_rows(12, seed=1)).to_csv(second, index=False)
    splits = load_splits(
        DataConfig(data_files=f"{first},{second}", text_field="phrase", eval_split="train[:2]")
    )
    assert len(splits.train) == 42
    assert set(splits.train["_slmops_source"]) == {str(first), str(second)}


def test_a_local_folder_as_data_name_has_its_splits(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    for name, rows in (("train.jsonl", tone_rows(30)), ("validation.json", tone_rows(6))):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / name).write_text(text if name.endswith("l") else json.dumps(rows))
    splits = load_splits(
        DataConfig(data_name=str(folder), text_field="phrase", eval_split="validation")
    )
    assert (len(splits.train), len(splits.eval)) == (30, 6)


def test_hub_loader_reads_through_datasets(tmp_path):
    """The hub path is datasets.load_dataset; a local folder exercises it without a network."""
    folder = tmp_path / "hub-like"
    folder.mkdir()
    pd.DataFrame(tone_rows(10)).to_parquet(folder / "train-00000.parquet")
    pd.DataFrame(tone_rows(4, seed=3)).to_parquet(folder / "test-00000.parquet")
    splits = load_hub_splits(str(folder), None)
    assert {name: len(frame) for name, frame in splits.items()} == {"train": 10, "test": 4}
    assert splits["test"][LINE].tolist() == [1, 2, 3, 4]
    assert splits["train"]["_slmops_source"].iloc[0].endswith("/train")


def test_unreachable_hub_dataset_says_what_to_do():
    # HF_DATASETS_OFFLINE=1 (conftest): the request fails fast, like a machine without network.
    settings = {"data_name": "nampdn-ai/tiny-codes", "text_field": "prompt"}
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(**settings))
    message = str(info.value)
    assert message.startswith("data_name 'nampdn-ai/tiny-codes': could not load the dataset")
    assert "pass local files with --data_files" in message


def test_subsets_are_for_hub_datasets_only(tones):
    with pytest.raises(DataError, match="train_subset / eval_subset apply to hub datasets"):
        load_splits(config(tones, train_subset="en"))


def test_prepare_formats_both_splits_with_a_stable_fingerprint(tones):
    settings = {"label_field": "tone", "eval_fraction": 0.1}
    prepared = prepare(config(tones, **settings))
    assert len(prepared.train) == 108 and len(prepared.eval) == 12
    example = prepared.train[0]
    assert example.prompt.endswith(" => ") and example.completion in TONES
    assert prepared.train_labels[0] == example.completion
    assert prepare(config(tones, **settings)).fingerprint == prepared.fingerprint
    other = prepare(config(tones, text_template="{phrase} -> {tone}", **settings))
    assert other.fingerprint != prepared.fingerprint


def test_prepare_names_the_row_that_cannot_be_formatted(write_jsonl):
    rows = tone_rows(20)
    rows[4]["tone"] = None
    path = write_jsonl(rows, "holes.jsonl")
    with pytest.raises(FormatError, match=r"holes\.jsonl:5: column 'tone' has no value"):
        prepare(config(path, eval_split="train[:2]"))


def test_prepare_checks_template_columns_before_formatting(tones):
    with pytest.raises(FormatError, match=r"\{tones\}: no such column"):
        prepare(config(tones, text_template="{phrase} {tones}"))
