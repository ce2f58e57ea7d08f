"""The slm_finetune plan: params checked, files confined to the data roots, stage settings;
the params' own defaults assume no columns."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from slmops.errors import ConfigError
from slmops.evaluation.config import GateThresholds
from slmops.pipeline import locations, stages
from slmops.pipeline.params import DEMO_PARAMS, FORM_SECTIONS, PipelineParams, field_value, parse
from slmops.pipeline.plan import evaluate_config, prepare, read_plan
from slmops.training.config import FinetuneConfig

RUN_ID = "manual__2026-11-29T10:00:00+00:00"


@pytest.fixture
def roots(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "tones.jsonl").write_text('{"phrase": "hi", "tone": "joyful"}\n')
    (data / "sub" / "more.jsonl").write_text('{"phrase": "oh", "tone": "sad"}\n')
    (tmp_path / "secret.jsonl").write_text("{}\n")
    return [data]


def make_plan(tmp_path, roots, **conf):
    """The demo task's params on the tone rows of ``roots``, changed by ``conf``."""
    return prepare(
        {**DEMO_PARAMS, "data_files": ["tones.jsonl"], **conf},
        dag_id="slm_finetune",
        run_id=RUN_ID,
        artifacts_root=tmp_path / "artifacts",
        data_roots=roots,
    )


def test_plan_lays_out_the_run_folder_and_each_stage(tmp_path, roots):
    plan = make_plan(tmp_path, roots, targets=["cpu-int4", "gpu-fp16", "cpu-int8"])
    run_dir = locations.run_dir(tmp_path / "artifacts", "slm_finetune", RUN_ID)
    assert run_dir.parent == tmp_path / "artifacts" / "runs" / "slm_finetune"
    assert run_dir.name.startswith("manual__2026-11-29T10_00_00+00_00-")
    assert plan["run_dir"] == str(run_dir)
    assert read_plan(run_dir) == json.loads(json.dumps(plan))
    assert plan["cpu_targets"] == ["cpu-int4", "cpu-int8"]
    assert plan["gpu_targets"] == ["gpu-fp16"]
    assert plan["train_on_gpu"] is False
    assert plan["finetune"]["data_files"] == [str(roots[0] / "tones.jsonl")]
    assert plan["finetune"]["output_path"] == str(run_dir / "finetune")
    assert plan["finetune"]["use_chat_template"] is True
    assert plan["validation"]["suite"] == "phrase_tones"
    assert plan["evaluate"]["run_path"] == plan["optimize"]["run_path"]
    assert plan["models_root"] == str(tmp_path / "artifacts" / "models")


def test_gpu_device_routes_training_to_the_gpu_queue(tmp_path, roots):
    assert make_plan(tmp_path, roots, device="gpu")["train_on_gpu"] is True


@pytest.mark.parametrize(
    "value, message",
    [
        ("/etc/passwd", "outside the data roots"),
        ("../secret.jsonl", "outside the data roots"),
        ("../../../../etc/passwd", "outside the data roots"),
        ("missing.jsonl", "does not exist"),
    ],
)
def test_data_files_outside_the_roots_are_refused_before_anything_is_written(
    tmp_path, roots, value, message
):
    with pytest.raises(ConfigError, match=rf"param data_files: .*{message}"):
        make_plan(tmp_path, roots, data_files=[value])
    assert not (tmp_path / "artifacts").exists()


def test_a_symlink_out_of_the_roots_is_refused(tmp_path, roots):
    (roots[0] / "escape.jsonl").symlink_to(tmp_path / "secret.jsonl")
    with pytest.raises(ConfigError, match="outside the data roots"):
        make_plan(tmp_path, roots, data_files=["escape.jsonl"])


def test_paths_inside_the_roots_resolve(tmp_path, roots):
    inside = str(roots[0] / "sub" / "more.jsonl")
    plan = make_plan(tmp_path, roots, data_files=["sub/more.jsonl", inside])
    assert plan["finetune"]["data_files"] == [inside, inside]


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"model_name_or_path": "/etc"}, "param model_name_or_path: /etc is outside"),
        ({"model_name_or_path": "../.."}, "param model_name_or_path"),
        ({"suite": "/etc/passwd.yaml"}, "param suite: /etc/passwd.yaml is outside"),
        ({"data_files": None, "data_name": "/etc"}, "param data_name: /etc is outside"),
        ({"data_files": None, "data_name": "../../x"}, "param data_name: ../../x is outside"),
        ({"suite": "nope"}, "param suite: suite 'nope': no such suite"),
        ({"lora_r": 0}, "lora_r: Input should be greater than or equal to 1"),
        ({"targets": ["cpu-int3"]}, "targets.0: Input should be 'cpu-int4'"),
        ({"model_name": "Bad Name"}, "model_name: String should match pattern"),
        ({"template_kind": "template"}, "template_kind template needs text_template"),
        ({"data_name": "org/set"}, "give data_files .* or data_name"),
        ({"unknown": 1}, "unknown: Extra inputs are not permitted"),
        # A gate of inf passes everything, and inf/nan are not JSON (plan.json).
        ({"max_loss_gap": float("inf")}, "max_loss_gap: Input should be a finite number"),
        ({"min_improvement": float("nan")}, "min_improvement: Input should be a finite number"),
        ({"min_primary_metric": "-inf"}, "min_primary_metric: Input should be a finite"),
        ({"learning_rate": float("inf")}, "learning_rate: Input should be a finite number"),
        # true is not 1.
        ({"lora_r": True}, "lora_r: .*True is a boolean; give a number"),
        ({"max_steps": False}, "max_steps: .*False is a boolean; give a number"),
        ({"max_export_degradation": True}, "max_export_degradation: .*boolean"),
    ],
)
def test_invalid_params_are_named(tmp_path, roots, conf, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(tmp_path, roots, **conf)


def test_a_refused_conf_writes_no_plan(tmp_path, roots):
    with pytest.raises(ConfigError):
        make_plan(tmp_path, roots, max_loss_gap=float("inf"))
    assert not list(tmp_path.rglob("plan.json"))


def test_bundled_names_pass_through(tmp_path, roots):
    assert make_plan(tmp_path, roots)["finetune"]["model_name_or_path"] == "smollm2-135m-instruct"
    assert make_plan(tmp_path, roots)["sources"] == {}


@pytest.mark.parametrize(
    "conf, param",
    [
        ({"model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}, "model_name_or_path"),
        ({"data_files": None, "data_name": "org/tones"}, "data_name"),
    ],
)
def test_hub_ids_are_refused_unless_the_deployment_allows_them(
    tmp_path, roots, monkeypatch, conf, param
):
    monkeypatch.delenv("SLMOPS_ALLOW_HUB", raising=False)
    with pytest.raises(
        ConfigError,
        match=rf"param {param}: .* is a Hugging Face hub id.*"
        r"SLMOPS_ALLOW_HUB is not set.*SLMOPS_ALLOW_HUB=1",
    ):
        make_plan(tmp_path, roots, **conf)
    monkeypatch.setenv("SLMOPS_ALLOW_HUB", "acme/*, other/one")
    with pytest.raises(ConfigError, match=r"allows only the hub ids matching"):
        make_plan(tmp_path, roots, **conf)
    assert not (tmp_path / "artifacts").exists()


MODEL_SHA = "a" * 40
DATA_SHA = "b" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A hand-made hub cache (offline mode, as the tests run): a model and a dataset whose
    main branch names one commit each, and an older model commit."""
    cache = tmp_path / "hub"
    for folder, sha in (("models--org--tiny", MODEL_SHA), ("datasets--org--tones", DATA_SHA)):
        (cache / folder / "snapshots" / sha).mkdir(parents=True)
        (cache / folder / "refs").mkdir()
        (cache / folder / "refs" / "main").write_text(sha)
    (cache / "models--org--tiny" / "snapshots" / ("c" * 40)).mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("SLMOPS_ALLOW_HUB", "org/*")
    return cache


def test_an_allowed_hub_id_is_pinned_to_a_commit_that_every_stage_loads(tmp_path, roots, hub_cache):
    plan = make_plan(
        tmp_path, roots, model_name_or_path="org/tiny", data_files=None, data_name="org/tones"
    )
    assert plan["sources"] == {
        "model": {"id": "org/tiny", "revision": MODEL_SHA},
        "dataset": {"id": "org/tones", "revision": DATA_SHA},
    }
    finetune = plan["finetune"]
    assert finetune["model_name_or_path"] == f"org/tiny@{MODEL_SHA}"
    assert plan["validation"]["model_name_or_path"] == f"org/tiny@{MODEL_SHA}"
    assert (finetune["data_name"], finetune["data_revision"]) == ("org/tones", DATA_SHA)
    assert plan["validation"]["data"]["data_revision"] == DATA_SHA
    FinetuneConfig.model_validate(finetune)
    # A revision the form names is pinned as well.
    older = make_plan(tmp_path, roots, model_name_or_path=f"org/tiny@{'c' * 40}")
    assert older["sources"]["model"]["revision"] == "c" * 40


def test_a_hub_id_missing_from_the_offline_cache_is_refused_naming_the_param(
    tmp_path, roots, hub_cache
):
    with pytest.raises(
        ConfigError, match="param model_name_or_path: Hub model 'org/other'.*holds no snapshot"
    ):
        make_plan(tmp_path, roots, model_name_or_path="org/other")


@pytest.mark.parametrize(
    "conf, param",
    [
        ({"data_files": None, "data_name": "data/x.jsonl"}, "data_name"),
        ({"data_files": None, "data_name": "org/tones.csv"}, "data_name"),
        ({"model_name_or_path": "my-model/"}, "model_name_or_path"),
        ({"model_name_or_path": "models/my-model/v1"}, "model_name_or_path"),
        ({"model_name_or_path": "notes.txt"}, "model_name_or_path"),
    ],
)
def test_a_relative_path_found_in_no_data_root_is_refused(
    tmp_path, roots, monkeypatch, conf, param
):
    """Before, such a value passed as a hub id and was looked up later in the worker's
    working directory; even with hub ids allowed it is no hub id."""
    monkeypatch.setenv("SLMOPS_ALLOW_HUB", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "x.jsonl").write_text("{}\n")  # in the cwd, not in a root
    with pytest.raises(
        ConfigError,
        match=rf"param {param}: .* is neither a file or folder "
        "under the data roots .* nor a hub id",
    ):
        make_plan(tmp_path, roots, **conf)


def test_the_readers_get_the_data_roots(tmp_path, roots):
    plan = make_plan(tmp_path, roots)
    assert plan["finetune"]["data_roots"] == [str(roots[0])]
    assert plan["validation"]["data"]["data_roots"] == [str(roots[0])]


def test_glob_patterns_expand_inside_the_roots_sorted_and_confined(tmp_path, roots):
    (roots[0] / "sub" / "a.jsonl").write_text('{"phrase": "a", "tone": "sad"}\n')
    (roots[0] / "sub" / "folder.jsonl").mkdir()  # a pattern stands for files only
    root = roots[0]
    plan = make_plan(tmp_path, roots, data_files=["sub/*.jsonl"])
    assert plan["finetune"]["data_files"] == [
        str(root / "sub/a.jsonl"),
        str(root / "sub/more.jsonl"),
    ]
    plan = make_plan(tmp_path, roots, data_files=["**/*.jsonl", "tones.json?"])
    assert plan["finetune"]["data_files"] == [
        str(root / "sub/a.jsonl"),
        str(root / "sub/more.jsonl"),
        str(root / "tones.jsonl"),
        str(root / "tones.jsonl"),
    ]
    plan = make_plan(tmp_path, roots, data_files=[str(root / "sub" / "m*.jsonl")])
    assert plan["finetune"]["data_files"] == [str(root / "sub/more.jsonl")]
    (root / "tones[1].jsonl").write_text('{"phrase": "b", "tone": "sad"}\n')  # a name, as is
    plan = make_plan(tmp_path, roots, data_files=["tones[1].jsonl"])
    assert plan["finetune"]["data_files"] == [str(root / "tones[1].jsonl")]


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("*.csv", r"the pattern \*.csv matches nothing under"),
        ("../*.jsonl", r"the pattern \.\./\*.jsonl may not contain '\.\.'"),
        ("sub/*/../../../*", "may not contain"),
        ("/etc/pass*", "/etc is outside the data roots"),
        ("/**/*.jsonl", "/ is outside the data roots"),  # no walk of the whole disk
        ("link*.jsonl", "outside the data roots"),
    ],
)
def test_a_glob_matching_nothing_or_leaving_the_roots_is_refused(tmp_path, roots, pattern, message):
    (roots[0] / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    with pytest.raises(ConfigError, match=rf"param data_files: .*{message}"):
        make_plan(tmp_path, roots, data_files=[pattern])


def test_targets_are_deduplicated_and_comma_lists_accepted(tmp_path, roots):
    plan = make_plan(tmp_path, roots, targets="cpu-int4, cpu-int4,cpu-fp32")
    assert plan["cpu_targets"] == ["cpu-int4", "cpu-fp32"]


def test_template_kind_picks_one_format(tmp_path, roots):
    plan = make_plan(
        tmp_path, roots, template_kind="template", text_template="Q: {phrase}\\nA: {tone}"
    )
    data = plan["validation"]["data"]
    assert data["text_template"] == "Q: {phrase}\nA: {tone}"
    assert data["use_chat_template"] is False and "system_prompt" not in data


# Values unlike both configs' defaults, so a slice that fell back on a default shows.
NOT_DEFAULT = {
    "method": "dora",
    "lora_r": 4,
    "lora_alpha": 8.0,
    "lora_dropout": 0.2,
    "target_modules": ["q_proj", "v_proj"],
    "modules_to_save": ["lm_head"],
    "max_steps": 7,
    "per_device_train_batch_size": 3,
    "gradient_accumulation_steps": 2,
    "learning_rate": 1e-3,
    "weight_decay": 0.1,
    "max_seq_len": 64,
    "eval_steps": 7,
    "early_stopping_patience": 2,
    "device": "cpu",
    "train_split": "train[1:]",
    "eval_split": "train[:1]",
    "eval_fraction": 0.3,
    "system_prompt": "Say the tone.",
    "min_improvement": 0.2,
    "max_loss_gap": 3.5,
    "max_export_degradation": 0.05,
}


def test_every_param_a_stage_config_shares_reaches_that_stage(tmp_path, roots):
    """A param named like a FinetuneConfig or GateThresholds field is that setting: it is
    in the plan with the param's value, whichever field is added to both later."""
    data_file = str((roots[0] / "tones.jsonl").resolve())  # as confining writes it
    conf = {**DEMO_PARAMS, **NOT_DEFAULT, "data_files": [data_file]}
    plan = make_plan(tmp_path, roots, **conf)
    params = parse(conf).model_dump(mode="json")
    assert params == plan["params"]

    training = [name for name in PipelineParams.model_fields if name in FinetuneConfig.model_fields]
    assert {"lora_r", "learning_rate", "device", "input_field", "data_files"} <= set(training)
    for name in training:  # the template kind here is chat, so its fields go too
        assert name in plan["finetune"], f"param {name} does not reach plan['finetune']"
        assert plan["finetune"][name] == params[name], name
    assert plan["finetune"]["model_name_or_path"] == "smollm2-135m-instruct"
    assert plan["validation"]["data"] == {
        name: plan["finetune"][name] for name in plan["validation"]["data"]
    }

    gates = [name for name in PipelineParams.model_fields if name in GateThresholds.model_fields]
    assert set(gates) == {"min_improvement", "max_loss_gap", "max_export_degradation"}
    judged = {**plan["evaluate"], **plan["optimize"]}
    for name in gates:
        assert judged.get(name) == params[name], f"gate {name} does not reach evaluate/optimize"
    assert plan["optimize"]["max_export_degradation"] == 0.05
    assert plan["evaluate"]["max_loss_gap"] == 3.5
    for name, value in NOT_DEFAULT.items():  # the check above compared the right values
        assert params[name] == value
        default = (FinetuneConfig.model_fields | GateThresholds.model_fields)[name].default
        assert value != default, name


@pytest.fixture
def intents_root(tmp_path, tiny_model_dir):
    """A new user's data root: intents.csv (columns utterance,intent) and a model."""
    data = tmp_path / "mine"
    data.mkdir()
    intents = ["greet", "book", "cancel", "weather"]
    rows = [
        f"please help with request {i} for {intents[i % 4]},{intents[i % 4]}" for i in range(40)
    ]
    (data / "intents.csv").write_text("utterance,intent\n" + "\n".join(rows) + "\n")
    return [data, tiny_model_dir.parent]


def test_a_csv_with_its_own_columns_plans_and_validates_with_the_default_suite(
    tmp_path, intents_root, tiny_model_dir
):
    """The params name only the user's own columns: no phrase or tone column is assumed
    (the plan once failed on "input {phrase}, {tone}: no such column") and the default
    suite checks the data (not phrase_tones' six labels)."""
    plan = prepare(
        {
            "model_name": "intents",
            "model_name_or_path": str(tiny_model_dir),
            "data_files": ["intents.csv"],
            "text_template": "{utterance} -> {intent}",
            "label_field": "intent",
            "max_seq_len": 64,
        },
        dag_id="slm_intents",
        run_id="r1",
        artifacts_root=tmp_path / "artifacts",
        data_roots=intents_root,
    )
    data = plan["validation"]["data"]
    assert plan["params"]["template_kind"] == "template"
    assert data["text_template"] == "{utterance} -> {intent}"
    assert data["use_chat_template"] is False and data["label_field"] == "intent"
    assert not {"input_field", "output_field", "system_prompt"} & set(data)
    assert plan["validation"]["suite"] == "default"
    assert plan["params"]["system_prompt"] is None and plan["params"]["input_field"] is None

    checked = stages.validate(plan["validation"])
    assert checked["passed"], checked
    assert checked["train_rows"] + checked["eval_rows"] == 40


def test_the_params_defaults_assume_no_columns():
    params = parse({"model_name": "mine", "data_files": ["a.csv"], "text_template": "{a} {b}"})
    assert params.suite == "default"
    assert params.input_field is params.output_field is params.label_field is None
    assert params.system_prompt is None
    assert params.template_kind == "template"
    required = [name for name, field in PipelineParams.model_fields.items() if field.is_required()]
    assert required == ["model_name"]  # a published name is the run's own to choose
    with pytest.raises(ConfigError, match="model_name: Field required"):
        parse({"data_files": ["a.csv"], "text_template": "{a}"})


def test_text_field_alone_selects_the_text_kind(tmp_path, roots):
    assert parse({"model_name": "m", "data_files": ["a"], "text_field": "t"}).template_kind == (
        "text"
    )
    plan = make_plan(tmp_path, roots, template_kind=None, text_field="phrase")
    data = plan["finetune"]
    assert plan["params"]["template_kind"] == "text"
    assert data["text_field"] == "phrase" and data["text_template"] is None
    assert data["use_chat_template"] is False and "input_field" not in data


def test_a_template_kind_given_wins_over_what_it_would_be_chosen_from(tmp_path, roots):
    plan = make_plan(tmp_path, roots, text_template="{phrase} -> {tone}")  # demo: chat
    assert plan["finetune"]["use_chat_template"] is True
    assert plan["finetune"]["text_template"] is None


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {},
            r"template_kind chat \(chosen as neither text_template nor text_field is given\) "
            r"needs input_field and output_field \(input_field and output_field name the "
            r"columns of the user's and the assistant's turns; or give text_template",
        ),
        ({"template_kind": "chat", "output_field": "b"}, r"template_kind chat needs input_field "),
        ({"input_field": "a"}, r"template_kind chat \(chosen .*\) needs output_field \("),
        ({"text_template": "{a}", "text_field": "t"}, "text_template and text_field are both"),
    ],
)
def test_a_template_missing_its_columns_is_refused_naming_them(conf, message):
    with pytest.raises(ConfigError, match=rf"^invalid params: {message}"):
        parse({"model_name": "m", "data_files": ["a.csv"], **conf})


def test_one_param_is_checked_on_its_own():
    """What a search varies is checked without a whole run around it (a run's data and
    name are given elsewhere)."""
    assert field_value("lora_r", "8") == 8
    assert field_value("learning_rate", "1e-3") == 0.001
    assert field_value("method", "dora") == "dora"
    assert field_value("target_modules", "q_proj, v_proj") == ["q_proj", "v_proj"]
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        field_value("lora_r", 0)
    with pytest.raises(ValidationError, match="'lora', 'qlora', 'dora' or 'full'"):
        field_value("method", "prefix")


def test_run_folders_are_one_per_run_and_safe(tmp_path):
    root = tmp_path / "artifacts"
    first = locations.run_dir(root, "slm_finetune", "manual__2026-11-29T10:00:00+00:00")
    second = locations.run_dir(root, "slm_finetune", "manual__2026-11-29T10:00:01+00:00")
    assert first != second and first.parent == second.parent
    escaping = locations.run_dir(root, "d", "../../etc")
    assert escaping.parent == root / "runs" / "d" and ".." not in escaping.parts
    # Names that differ only in characters a folder name cannot hold stay apart.
    assert locations.run_dir(root, "d", "a:b") != locations.run_dir(root, "d", "a_b")
    assert locations.run_dir(root, "d", "a_b").name == "a_b"


def test_roots_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(locations.DATA_ROOTS_ENV, f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv(locations.ARTIFACTS_ENV, str(tmp_path / "art"))
    assert locations.data_roots() == [tmp_path / "a", tmp_path / "b"]
    assert locations.artifacts_root() == tmp_path / "art"
    assert locations.artifacts_root(str(tmp_path / "var")) == tmp_path / "var"


def test_form_sections_cover_every_param_once():
    named = [name for names in FORM_SECTIONS.values() for name in names]
    assert sorted(named) == sorted(PipelineParams.model_fields)


def test_min_primary_metric_becomes_the_primary_metric_floor(tone_run):
    config = evaluate_config({"run_path": str(tone_run), "min_primary_metric": 0.9})
    assert config.min_metric == {"accuracy": 0.9}
    assert evaluate_config({"run_path": str(tone_run)}).min_metric is None


def test_processes_and_fsdp_reach_the_training_slice_and_are_checked_there(tmp_path, roots):
    plan = make_plan(tmp_path, roots, num_processes=2)
    assert plan["finetune"]["num_processes"] == 2 and plan["finetune"]["fsdp"] is False
    assert "num_processes" in FORM_SECTIONS["Training"] and "fsdp" in FORM_SECTIONS["Training"]
    with pytest.raises(ConfigError, match="fsdp.*num_processes 2 or more"):
        make_plan(tmp_path, roots, fsdp=True)
