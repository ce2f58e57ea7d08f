"""The slm_hpo search: the guide's search file, its trials, the best trial and its table."""

from __future__ import annotations

import math

import pytest
import yaml

from slmops.errors import ConfigError, SearchError
from slmops.pipeline.configs.search import SEARCHABLE, best_trial, load_search, trials, trials_table
from slmops.pipeline.params import DEMO_PARAMS, PipelineParams

# The reference guide's hyperparameter-search.yaml, byte for byte: two of its blank lines
# hold two spaces (written \x20 here so the source has no trailing whitespace).
GUIDE_YAML = """\
# hyperparameter-search.yaml
search_strategy:
  type: "random"
  num_trials: 20

search_space:
  learning_rate:
    type: "float"
    low: 1e-6
    high: 1e-3
    log: true
\x20\x20
  lora_r:
    type: "int"
    low: 8
    high: 64
\x20\x20
  batch_size:
    type: "choice"
    values: [8, 16, 32]
"""


def spec_of(space, **strategy):
    return {
        "search_strategy": {"type": "random", "num_trials": 5, **strategy},
        "search_space": space,
    }


def guide(tmp_path, text=GUIDE_YAML):
    path = tmp_path / "hpo.yaml"
    path.write_text(text)
    return load_search(path)


def test_the_guide_file_loads_and_yields_20_valid_trials(tmp_path):
    spec = guide(tmp_path)
    assert spec.search_strategy.seed == 42
    assert list(spec.search_space) == ["learning_rate", "lora_r", "per_device_train_batch_size"]
    drawn = trials(spec)
    assert len(drawn) == 20
    for trial in drawn:
        assert 1e-6 <= trial["learning_rate"] <= 1e-3
        assert isinstance(trial["lora_r"], int) and 8 <= trial["lora_r"] <= 64
        assert trial["per_device_train_batch_size"] in {8, 16, 32}
        assert isinstance(trial["per_device_train_batch_size"], int)
        assert float(f"{trial['learning_rate']:.6g}") == trial["learning_rate"]
        PipelineParams(**{**DEMO_PARAMS, **trial})  # every trial is a valid run
    assert len({tuple(trial.values()) for trial in drawn}) == 20


def test_the_same_seed_gives_the_same_trials_and_another_seed_others(tmp_path):
    assert trials(guide(tmp_path)) == trials(guide(tmp_path))
    other = guide(tmp_path, GUIDE_YAML.replace("num_trials: 20", "num_trials: 20\n  seed: 7"))
    assert other.search_strategy.seed == 7
    assert trials(other) != trials(guide(tmp_path))


def test_log_sampling_is_geometric():
    spec = load_search(
        spec_of(
            {"lr": {"type": "float", "low": "1e-6", "high": "1e-3", "log": True}}, num_trials=400
        )
    )
    rates = [trial["learning_rate"] for trial in trials(spec)]
    below = sum(rate < 1e-4 for rate in rates) / len(rates)
    assert 0.55 < below < 0.78  # two of three decades; a uniform draw would give about 0.1
    linear = load_search(spec_of({"lr": {"type": "float", "low": 1e-6, "high": 1e-3}}))
    assert all(trial["learning_rate"] >= 1e-6 for trial in trials(linear))


def test_log_int_sampling_stays_within_bounds_and_reaches_both_ends():
    spec = load_search(
        spec_of({"r": {"type": "int", "low": 4, "high": 8, "log": True}}, num_trials=200)
    )
    values = [trial["lora_r"] for trial in trials(spec)]
    assert set(values) == {4, 5, 6, 7, 8}


def test_a_small_space_repeats_only_once_it_runs_out():
    spec = load_search(
        spec_of({"method": {"type": "choice", "values": ["lora", "dora"]}}, num_trials=3)
    )
    methods = [trial["method"] for trial in trials(spec)]
    assert sorted(methods[:2]) == ["dora", "lora"] and methods[2] in {"lora", "dora"}


def test_grid_enumerates_the_product_in_order():
    spec = load_search(
        {
            "search_strategy": {"type": "grid"},
            "search_space": {
                "lr": {
                    "type": "float",
                    "low": "1e-5",
                    "high": "1e-3",
                    "log": True,
                    "num_values": 3,
                },
                "lora_r": {"type": "int", "low": 8, "high": 24, "step": 8},
                "method": {"type": "choice", "values": ["lora", "dora"]},
            },
        }
    )
    grid = trials(spec)
    assert len(grid) == 3 * 3 * 2
    assert grid[0] == {"learning_rate": 1e-5, "lora_r": 8, "method": "lora"}
    assert grid[1] == {"learning_rate": 1e-5, "lora_r": 8, "method": "dora"}
    assert grid[2] == {"learning_rate": 1e-5, "lora_r": 16, "method": "lora"}
    assert [trial["learning_rate"] for trial in grid[::6]] == [1e-5, 1e-4, 1e-3]
    assert grid[-1] == {"learning_rate": 1e-3, "lora_r": 24, "method": "dora"}
    assert trials(spec) == grid


def test_grid_spaces_floats_evenly_and_coerces_choice_strings():
    spec = load_search(
        {
            "search_strategy": {"type": "grid", "num_trials": 10},
            "search_space": {
                "dropout": {"type": "float", "low": 0.0, "high": 0.3, "num_values": 4},
                "weight_decay": {"type": "choice", "values": ["0", "1e-2"]},
            },
        }
    )
    grid = trials(spec)
    assert [trial["lora_dropout"] for trial in grid[::2]] == [0.0, 0.1, 0.2, 0.3]
    assert [trial["weight_decay"] for trial in grid[:2]] == [0.0, 0.01]


def test_grid_larger_than_num_trials_is_refused_with_its_size():
    space = {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "num_values": 5},
        "batch_size": {"type": "choice", "values": [8, 16, 32]},
    }
    with pytest.raises(ConfigError) as caught:
        load_search(spec_of(space, type="grid", num_trials=10), name="hpo.yaml")
    message = str(caught.value)
    assert message.startswith("hpo.yaml: search_strategy.num_trials:")
    assert "15 points (5 x 3)" in message


def test_dict_sources_are_named_and_files_by_their_path(tmp_path):
    with pytest.raises(ConfigError, match=r"^search: search_space"):
        load_search(spec_of({}))
    path = tmp_path / "hpo.yaml"
    path.write_text("search_strategy: [1]\n")
    with pytest.raises(ConfigError, match=r"hpo\.yaml: search_strategy"):
        load_search(str(path))


@pytest.mark.parametrize(
    ("space", "strategy", "field", "words"),
    [
        (
            {"lora_rank": {"type": "int", "low": 8, "high": 64}},
            {},
            "search_space.lora_rank",
            ["searchable: method, lora_r", "learning_rate", "did you mean lora_r?"],
        ),
        (
            {"lr": {"type": "float", "low": 1e-3, "high": 1e-3}},
            {},
            "search_space.lr.high",
            ["must be above low"],
        ),
        (
            {"lora_r": {"type": "int", "low": 64, "high": 8}},
            {},
            "search_space.lora_r.high",
            ["must be above low (64)"],
        ),
        (
            {"lr": {"type": "float", "low": 0, "high": 1e-3, "log": True}},
            {},
            "search_space.lr.log",
            ["low above 0"],
        ),
        (
            {"lora_r": {"type": "int", "low": 0, "high": 8}},
            {},
            "search_space.lora_r.low",
            ["greater than or equal to 1"],
        ),
        (
            {"dropout": {"type": "float", "low": 0.1, "high": 1.0}},
            {},
            "search_space.dropout.high",
            ["less than 1"],
        ),
        (
            {"batch_size": {"type": "choice", "values": [8, 0]}},
            {},
            "search_space.batch_size.values",
            ["greater than or equal to 1"],
        ),
        (
            {"batch_size": {"type": "choice", "values": [8, 8]}},
            {},
            "search_space.batch_size.values",
            ["listed twice"],
        ),
        (
            {"lr": {"type": "float", "low": 1e-5, "high": 1e-3}},
            {"type": "grid"},
            "search_space.lr.num_values",
            ["grid search needs num_values"],
        ),
        (
            {"r": {"type": "int", "low": 8, "high": 64, "log": True}},
            {"type": "grid"},
            "search_space.r.log",
            ["type: choice"],
        ),
        (
            {"lr": {"type": "float", "low": 1e-5, "high": 1e-3}},
            {"type": "bayesian"},
            "search_strategy.type",
            ["'random' or 'grid'"],
        ),
        (
            {"lr": {"type": "float", "low": 1e-5, "high": 1e-3}},
            {"num_trials": None},
            "search_strategy.num_trials",
            ["random search needs num_trials"],
        ),
        (
            {
                "lr": {"type": "float", "low": 1e-5, "high": 1e-3},
                "learning_rate": {"type": "choice", "values": [1e-4]},
            },
            {},
            "search_space.learning_rate",
            ["as search_space.lr does"],
        ),
        (
            {"lr": {"type": "gaussian", "low": 1e-5, "high": 1e-3}},
            {},
            "search_space.lr.type",
            ["float, int or choice"],
        ),
        (
            {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "steps": 3}},
            {},
            "search_space.lr.steps",
            ["Extra inputs"],
        ),
        (
            {"lora_r": {"type": "float", "low": 8, "high": 64}},
            {},
            "search_space.lora_r.type",
            ["whole number"],
        ),
        (
            {"method": {"type": "int", "low": 1, "high": 3}},
            {},
            "search_space.method.type",
            ["type: choice"],
        ),
    ],
)
def test_problems_name_the_file_and_the_field(tmp_path, space, strategy, field, words):
    path = tmp_path / "hpo.yaml"
    settings = {"type": "random", "num_trials": 5, **strategy}
    path.write_text(
        yaml.safe_dump({"search_strategy": settings, "search_space": space}, sort_keys=False)
    )
    with pytest.raises(ConfigError) as caught:
        load_search(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}:"), message
    for word in words:
        assert word in message, message


def test_searchable_names_are_numbers_of_training_and_the_method():
    assert SEARCHABLE[0] == "method"
    assert {"lora_r", "learning_rate", "per_device_train_batch_size", "lora_dropout"} <= set(
        SEARCHABLE
    )
    assert not {"model_name", "targets", "device", "early_stopping_patience"} & set(SEARCHABLE)


def result(index, metric, eval_loss=1.0, status="ok", error=None, **params):
    return {
        "index": index,
        "params": params or {"learning_rate": 1e-4, "lora_r": 8},
        "metric": metric,
        "eval_loss": eval_loss,
        "status": status,
        "error": error,
    }


def test_best_trial_picks_the_highest_metric_unless_lower_is_better():
    results = [result(0, 0.5), result(1, 0.9), result(2, 0.7)]
    assert best_trial(results, "accuracy") == 1
    assert best_trial(results, "perplexity", lower_is_better=True) == 0


def test_best_trial_skips_failed_and_unmeasured_trials():
    results = [
        result(0, 0.99, status="failed", error="CUDA out of memory"),
        result(1, None),
        result(2, math.nan),
        result(3, 0.6),
    ]
    assert best_trial(results, "accuracy") == 3


def test_best_trial_breaks_ties_by_eval_loss_then_index():
    results = [result(0, 0.8, eval_loss=0.9), result(1, 0.8, eval_loss=0.4), result(2, 0.8, 0.4)]
    assert best_trial(results, "accuracy") == 1
    assert best_trial([result(4, 0.8, None), result(5, 0.8, 2.0)], "accuracy") == 5


def test_no_usable_trial_is_an_error_that_says_why():
    with pytest.raises(
        SearchError, match=r"no trial finished with accuracy measured: 1 of 2 failed"
    ):
        best_trial([result(0, None, status="failed", error="boom"), result(1, None)], "accuracy")
    with pytest.raises(SearchError, match="no trial finished"):
        best_trial([], "accuracy")


def test_trials_table_has_a_row_per_trial_and_marks_the_best():
    results = [
        result(1, 0.75, 0.5, learning_rate=2.5e-05, lora_r=16),
        result(0, 0.8125, 0.4321, learning_rate=1e-4, lora_r=8),
        result(
            2,
            None,
            None,
            status="failed",
            error="CUDA out of memory\ntraceback...",
            learning_rate=1e-3,
            lora_r=64,
        ),
    ]
    headers, rows = trials_table(results, "accuracy")
    assert headers == [
        "trial",
        "learning_rate",
        "lora_r",
        "accuracy",
        "eval_loss",
        "status",
        "best",
    ]
    assert rows == [
        ["0", "0.0001", "8", "0.8125", "0.4321", "ok", "*"],
        ["1", "2.5e-05", "16", "0.7500", "0.5000", "ok", ""],
        ["2", "0.001", "64", "-", "-", "failed: CUDA out of memory", ""],
    ]
    _, rows = trials_table(results[2:], "accuracy")
    assert rows[0][-1] == ""
