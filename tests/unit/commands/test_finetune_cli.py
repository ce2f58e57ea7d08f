"""`slmops finetune` from the command line, and the shipped run configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmops.cli import main
from slmops.config import read_yaml_mapping
from slmops.testing import TONE_TEMPLATE, tone_rows
from slmops.training.config import FinetuneConfig

RUN_CONFIGS = sorted(
    (Path(__file__).parents[3] / "include" / "configs" / "finetune").glob("*.yaml")
)


def test_finetune_from_a_config_file_and_flags(tmp_path, tiny_model_dir, write_jsonl, capsys):
    data = write_jsonl(tone_rows(60))
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndata_files: {data}\n"
        f"text_template: {json.dumps(TONE_TEMPLATE)}\nmax_steps: 50\neval_steps: 2\n"
        "per_device_train_batch_size: 4\n"
    )
    out = tmp_path / "out"
    code = main(["finetune", "--config", str(run_yaml), "-o", str(out), "--max_steps", "2"])
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert summary["global_step"] == 2
    assert summary["adapter"] == str(out / "adapter")
    assert Path(summary["merged"], "model.safetensors").is_file()
    assert "step 2/2" in captured.err


def test_errors_exit_1_with_the_flag_named(tmp_path, capsys):
    code = main(["finetune", "--data_files", "x.jsonl", "--text_field", "t", "-o", str(tmp_path),
                 "--lora_dropout", "1.5"])  # fmt: skip
    assert code == 1
    assert (
        "slmops finetune: error: --lora_dropout: Input should be less than 1"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda path: path.name)
def test_shipped_run_configs_are_valid(path):
    settings = read_yaml_mapping(path)
    assert "output_path" not in settings  # the run folder is chosen per run
    config = FinetuneConfig.model_validate({**settings, "output_path": "out"})
    for name in config.data_files or []:
        assert (Path(__file__).parents[3] / name).is_file()


def test_at_least_one_run_config_ships():
    assert RUN_CONFIGS


# Another process holds a training folder's lock, as a live earlier attempt would.
_HOLD = """
import sys, time
from pathlib import Path
from slmops.training.lock import exclusive
with exclusive(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_busy_training_folder_exits_75_try_again_later(
    tmp_path, tiny_model_dir, write_jsonl, capsys
):
    """Not the input's fault: exit 75 (EX_TEMPFAIL), the holder named, no traceback."""
    import subprocess
    import sys

    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        code = main(["finetune", "-m", str(tiny_model_dir), "--data_files",
                     str(write_jsonl(tone_rows(40))), "--text_template", TONE_TEMPLATE,
                     "-o", str(out), "--max_steps", "1"])  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert code == 75
    err = capsys.readouterr().err
    assert "slmops finetune: try again later:" in err and f"pid {holder.pid}" in err
    assert "Traceback" not in err
