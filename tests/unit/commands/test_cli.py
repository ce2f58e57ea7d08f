import json

import pytest

from slmops.cli import build_parser, main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("models", "generate"):
        assert command in out


def test_models_list_on_empty_home(slmops_home, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"models directory: {slmops_home / 'models'}" in out
    assert "smollm2-135m-instruct" in out and "not pulled" in out
    assert main(["models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_models_pull_rejects_unknown_alias(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["models", "pull", "gpt-9"])
    assert info.value.code == 2
    assert "invalid choice: 'gpt-9'" in capsys.readouterr().err


def test_generate_reports_a_missing_model_cleanly(capsys):
    code = main(["generate", "-m", "./missing-model", "--prompt", "hi"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("slmops generate: error: Model './missing-model' is not a bundled")
    assert "Traceback" not in err


def test_generate_runs_a_local_model(tiny_model_dir, capsys):
    code = main(
        [
            "generate",
            "-m",
            str(tiny_model_dir),
            "--prompt",
            "a",
            "--prompt",
            "b",
            "--max_new_tokens",
            "3",
            "--no_chat_template",
        ]
    )
    assert code == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_models_pull_force_verify_and_remove(slmops_home, tiny_converter, capsys):
    alias = "smollm2-135m-instruct"
    assert main(["models", "pull", alias]) == 0
    assert capsys.readouterr().out == f"{alias}: created at {slmops_home / 'models' / alias}\n"
    assert main(["models", "pull", alias, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["models", "pull", alias, "--force"]) == 0
    assert f"{alias}: remade at" in capsys.readouterr().out

    assert main(["models", "verify"]) == 0
    assert capsys.readouterr().out == f"{alias}: ok\n"
    weights = slmops_home / "models" / alias / "model.safetensors"
    weights.write_bytes(b"x" * weights.stat().st_size)  # same size, other bytes
    assert main(["models", "verify"]) == 1
    assert "does not match its recorded sha256" in capsys.readouterr().out

    assert main(["models", "remove", alias]) == 0
    assert not weights.parent.exists()
    assert main(["models", "remove", alias]) == 1
    assert "No stored model named" in capsys.readouterr().err
