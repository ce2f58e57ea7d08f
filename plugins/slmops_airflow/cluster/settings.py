"""What the native cluster is made of: its folder, ports, secrets and the environment of
each Airflow component, built from cluster.env (shared with docker-compose.yaml)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slmops_airflow.cluster.errors import ClusterError

REPO = Path(__file__).resolve().parents[3]
ENV_FILE = REPO / "cluster.env"
HOST = "127.0.0.1"
GPU_QUEUE = "gpu"
# Two trainings on one GPU would share its memory (docker-compose.yaml says the same).
GPU_WORKER_CONCURRENCY = 1
# Tests only: lets the `gpu`-queue worker run its tasks on CPU (see slmops_airflow.gpu_queue).
GPU_QUEUE_ON_CPU = "SLMOPS_TEST_GPU_QUEUE_ON_CPU"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and lines starting with # are skipped."""
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ClusterError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = value.strip()
    return values


@dataclass
class ClusterSettings:
    folder: Path
    artifacts_root: Path
    api_port: int = 8080
    postgres_port: int = 15432
    redis_port: int = 16379
    dags_folder: Path = REPO / "dags"
    plugins_folder: Path = REPO / "plugins"
    data_roots: str | None = None  # SLMOPS_DATA_ROOTS for the stages; None: the default
    slmops_home: Path | None = None  # SLMOPS_HOME (model store); None: the default
    overrides: dict[str, str] = field(default_factory=dict)  # extra env for every component
    gpu_worker_on_cpu: bool = False  # tests only

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def airflow_home(self) -> Path:
        return self.folder / "airflow"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def state_file(self) -> Path:
        return self.folder / "state.json"


@dataclass(frozen=True)
class Secrets:
    """Generated once per cluster folder (mode 0600), reused on every start."""

    postgres_password: str
    redis_password: str
    fernet_key: str
    jwt_secret: str
    api_secret_key: str

    @classmethod
    def load_or_create(cls, folder: Path) -> Secrets:
        path = folder / "secrets.json"
        if path.is_file():
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        made = cls(
            postgres_password=secrets.token_hex(16),
            redis_password=secrets.token_hex(16),
            fernet_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            jwt_secret=secrets.token_urlsafe(64),
            api_secret_key=secrets.token_hex(16),
        )
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(asdict(made), out)
        partial.replace(path)
        return made


def without_airflow_settings() -> dict[str, str]:
    """This process's environment without inherited Airflow settings (AIRFLOW_HOME,
    AIRFLOW__*, AIRFLOW_CONFIG...): the start of an Airflow process's own environment."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}


def airflow_env(settings: ClusterSettings, keys: Secrets) -> dict[str, str]:
    """Every Airflow component's environment: this process's without inherited Airflow
    settings, then cluster.env, then what is particular to this machine."""
    env = without_airflow_settings()
    env.update(read_env_file(ENV_FILE))
    database = (
        f"postgresql+psycopg2://airflow:{keys.postgres_password}@{HOST}:"
        f"{settings.postgres_port}/airflow"
    )
    home = settings.airflow_home
    env.update(
        # `airflow` on PATH: the components start `airflow ...` subprocesses.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(settings.dags_folder),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(settings.plugins_folder),
        AIRFLOW__CORE__FERNET_KEY=keys.fernet_key,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{settings.url}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=database,
        AIRFLOW__CELERY__RESULT_BACKEND="db+" + database,
        AIRFLOW__CELERY__BROKER_URL=(
            f"redis://:{keys.redis_password}@{HOST}:{settings.redis_port}/0"
        ),
        AIRFLOW__API__BASE_URL=settings.url,
        AIRFLOW__API__SECRET_KEY=keys.api_secret_key,
        AIRFLOW__API_AUTH__JWT_SECRET=keys.jwt_secret,
        SLMOPS_ARTIFACTS_ROOT=str(settings.artifacts_root),
        TOKENIZERS_PARALLELISM="false",
    )
    if settings.data_roots is not None:
        env["SLMOPS_DATA_ROOTS"] = settings.data_roots
    if settings.slmops_home is not None:
        env["SLMOPS_HOME"] = str(settings.slmops_home)
    env.update(settings.overrides)
    return env
