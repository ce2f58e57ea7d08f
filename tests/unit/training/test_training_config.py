"""FinetuneConfig ranges and cross-checks, flags and --config files."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from slmops.cli import build_parser
from slmops.commands import config_from_args
from slmops.errors import ConfigError
from slmops.training.config import FinetuneConfig

BASE = {"data_files": "d.jsonl", "text_field": "text", "output_path": "out"}


def make(**overrides) -> FinetuneConfig:
    return FinetuneConfig.model_validate({**BASE, **overrides})


def test_defaults_suit_lora_and_checkpoint_at_eval_steps():
    config = make()
    assert config.method == "lora"
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32.0, 0.05)
    assert config.target_modules is None
    assert config.checkpoint_steps == config.eval_steps == 50
    assert config.training_dir.as_posix() == "out"


def test_task_name_gets_its_own_folder():
    assert make(task_name="classification").training_dir.as_posix() == "out/classification"
    with pytest.raises(ValidationError, match="folder-safe"):
        make(task_name="../escape")


def test_lists_accept_comma_separated_text():
    config = make(target_modules="q_proj, v_proj", modules_to_save="lm_head")
    assert config.target_modules == ["q_proj", "v_proj"]
    assert config.modules_to_save == ["lm_head"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lora_r", 0, "greater than or equal to 1"),
        ("lora_dropout", 1.0, "less than 1"),
        ("learning_rate", 0, "greater than 0"),
        ("method", "adapter", "'lora', 'qlora', 'dora' or 'full'"),
        ("lr_scheduler_type", "exponential", "cosine"),
        ("loss", "not a spec", "module.path:callable"),
    ],
)
def test_out_of_range_values_say_what_is_allowed(field, value, message):
    with pytest.raises(ValidationError, match=message):
        make(**{field: value})


def test_save_steps_must_be_a_multiple_of_eval_steps():
    with pytest.raises(ValidationError, match="multiple of eval_steps"):
        make(eval_steps=20, save_steps=30)
    assert make(eval_steps=20, save_steps=40).checkpoint_steps == 40


def test_adapter_only_settings_are_refused_for_full_fine_tuning():
    with pytest.raises(ValidationError, match="only apply to adapter methods"):
        make(method="full", target_modules="q_proj")


def test_identity_ignores_cosmetic_settings():
    assert make(logging_steps=1, report_to="tensorboard").identity() == make().identity()
    assert make(lora_r=8).identity() != make().identity()


def _args(*argv):
    return build_parser().parse_args(["finetune", *argv])


def test_flags_build_the_config_with_short_aliases_and_boolean_values():
    args = _args(
        "-m", "tiny", "-o", "runs/x", "--data_files", "a.jsonl,b.jsonl", "--text_field", "t",
        "--gradient_checkpointing", "true", "--merge_adapter", "false", "--packing",
    )  # fmt: skip
    config = config_from_args(FinetuneConfig, args)
    assert config.model_name_or_path == "tiny"
    assert config.output_path.as_posix() == "runs/x"
    assert config.data_files == ["a.jsonl", "b.jsonl"]
    assert config.gradient_checkpointing is True
    assert config.merge_adapter is False
    assert config.packing is True


def test_a_bad_flag_names_the_flag_and_range():
    args = _args("-o", "x", "--data_files", "a.jsonl", "--text_field", "t", "--lora_r", "0")
    with pytest.raises(ConfigError, match=r"--lora_r: Input should be greater than or equal to 1"):
        config_from_args(FinetuneConfig, args)


def test_a_missing_output_path_is_named():
    args = _args("--data_files", "a.jsonl", "--text_field", "t")
    with pytest.raises(ConfigError, match="--output_path: Field required"):
        config_from_args(FinetuneConfig, args)


def test_config_file_values_are_overridden_by_flags(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        "data_files: [a.jsonl]\ntext_field: t\noutput_path: out\nlora_r: 8\nmax_steps: 50\n"
    )
    config = config_from_args(FinetuneConfig, _args("--max_steps", "20"), config_file=run_yaml)
    assert (config.lora_r, config.max_steps) == (8, 20)


def test_config_file_errors_name_the_file_and_key(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("data_files: a.jsonl\ntext_field: t\noutput_path: out\nwarmup_ratio: 2\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: warmup_ratio: Input should be less than 1"):
        config_from_args(FinetuneConfig, _args(), config_file=run_yaml)
    # A flag's error still names the flag when a file is used too.
    with pytest.raises(ConfigError, match=r"--lora_alpha: Input should be greater than 0"):
        config_from_args(FinetuneConfig, _args("--lora_alpha", "0"), config_file=run_yaml)


def test_unknown_keys_in_a_config_file_are_listed(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("data_files: a.jsonl\ntext_field: t\noutput_path: out\nlora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown setting lora_rank"):
        config_from_args(FinetuneConfig, _args(), config_file=run_yaml)


def test_boolean_flags_refuse_other_words():
    with pytest.raises(SystemExit):
        _args("--packing", "maybe")
