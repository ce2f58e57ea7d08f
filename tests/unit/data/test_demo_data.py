"""The demo datasets shipped in include/data: size, balance, distinctness, no giveaways."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "include" / "data"


def normalise(text):
    return re.sub(r"[^a-z0-9 ]", "", re.sub(r"\s+", " ", text.lower())).strip()


@pytest.fixture(scope="module")
def tones():
    lines = (DATA / "phrase_tones.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def instructions():
    return json.loads((DATA / "instructions.json").read_text(encoding="utf-8"))


def test_phrase_tones_is_large_balanced_and_distinct(tones):
    assert len(tones) >= 600
    assert all(set(row) == {"phrase", "tone"} for row in tones)
    counts = Counter(row["tone"] for row in tones)
    assert len(counts) >= 6
    assert max(counts.values()) == min(counts.values())
    phrases = [normalise(row["phrase"]) for row in tones]
    assert all(phrases) and len(set(phrases)) == len(phrases)
    assert all(row["phrase"] == row["phrase"].strip() for row in tones)


def test_no_phrase_gives_its_label_away(tones):
    giveaways = [row for row in tones if row["tone"].lower() in row["phrase"].lower()]
    assert giveaways == []


def test_tones_are_interleaved_not_grouped(tones):
    first_hundred = Counter(row["tone"] for row in tones[:100])
    assert len(first_hundred) == len({row["tone"] for row in tones})


def test_instructions_follow_the_guide_format(instructions):
    assert isinstance(instructions, list) and len(instructions) >= 150
    assert all(set(row) == {"input", "output"} for row in instructions)
    assert all(row["input"].strip() and row["output"].strip() for row in instructions)
    inputs = [normalise(row["input"]) for row in instructions]
    outputs = [normalise(row["output"]) for row in instructions]
    assert len(set(inputs)) == len(inputs) and len(set(outputs)) == len(outputs)
