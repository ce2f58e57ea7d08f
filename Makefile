# slmops: `make demo` and `make test` each work on a fresh clone (they run setup first).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.slmops-installed
DEV_STAMP := $(VENV)/.slmops-dev-installed
# Every install is held to constraints.txt: the whole environment, pinned.
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check
CONSTRAINED := -c constraints.txt
BASE_MODEL := smollm2-135m-instruct
# pip notes every extra index folder it cannot read; they are noise here.
PIP_QUIET := sed -e '/is ignored: it is neither a file nor a directory/d' \
	-e '/editable_wheel.py/,/WheelFile(wheel_path/d'

.PHONY: help setup demo airflow airflow-db cluster cluster-stop cluster-status mlflow test test-unit test-integration lint format bench clean

help:
	@echo "make setup   venv + requirements.txt (held to constraints.txt) + package (editable) + bundled base model"
	@echo "make demo    the slm_finetune DAG end to end on the bundled model (airflow dags test)"
	@echo "make airflow the Airflow UI on 127.0.0.1:8080 with the project's DAGs (user admin; the"
	@echo "             password is generated and printed on first start, or SLMOPS_ADMIN_PASSWORD)"
	@echo "make cluster  the CeleryExecutor stack (PostgreSQL, Redis, 2 workers) as local processes"
	@echo "make cluster-stop  stops everything make cluster started"
	@echo "make mlflow  the MLflow UI on 127.0.0.1:5000 over the tracked runs in artifacts/mlflow"
	@echo "make test    every test tier (installs requirements-dev.txt first)"
	@echo "make lint    ruff check + ruff format --check + import contracts (lint-imports)"
	@echo "make format  ruff format + ruff check --fix"
	@echo "make bench   benchmarks/ (prints measured ratios)"

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else \
		"slmops needs Python 3.11; run: make clean && make setup PYTHON=/path/to/python3.11")'
	@echo "installing requirements into $(VENV) (first run only)"
	@$(PIP_INSTALL) --upgrade pip 2>&1 | $(PIP_QUIET)
	@$(PIP_INSTALL) -r requirements.txt $(CONSTRAINED) 2>&1 | $(PIP_QUIET)
	@$(PIP_INSTALL) --no-deps -e . 2>&1 | $(PIP_QUIET)
	@$(PY) -c "import slmops, torch, transformers, peft"
	@touch $(STAMP)

# Test and lint tools (pytest, ruff, import-linter, ...): for make test / lint, not the image.
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	@echo "installing requirements-dev.txt into $(VENV) (first run only)"
	@$(PIP_INSTALL) -r requirements-dev.txt $(CONSTRAINED) 2>&1 | $(PIP_QUIET)
	@touch $(DEV_STAMP)

setup: $(STAMP)
	@$(PY) -m slmops models pull $(BASE_MODEL) --quiet

# Airflow from the project: SQLite and logs in .airflow/, the project's DAGs and plugins,
# no example DAGs, run artifacts and published models in artifacts/.
AIRFLOW_HOME := $(CURDIR)/.airflow
# PATH: `airflow standalone` starts its components as `airflow ...` subprocesses.
AIRFLOW_ENV := PATH=$(CURDIR)/$(VENV)/bin:$$PATH AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(AIRFLOW_HOME)/passwords.json \
	AIRFLOW__API__HOST=127.0.0.1 \
	SLMOPS_ARTIFACTS_ROOT=$(CURDIR)/artifacts
AIRFLOW := $(AIRFLOW_ENV) $(VENV)/bin/airflow
# Runs a command as a child and, on SIGTERM or Ctrl-C, stops its whole process tree.
SUPERVISED := $(PY) -m slmops_airflow.cluster run --

airflow-db: setup
	@mkdir -p $(AIRFLOW_HOME)
	@$(AIRFLOW) db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 \
		|| { tail -20 $(AIRFLOW_HOME)/db-migrate.log; exit 1; }

# The slm_finetune DAG end to end with `airflow dags test` (SQLite, no scheduler): the
# form's defaults are the demo (bundled SmolLM2, include/data/phrase_tones.jsonl, LoRA,
# cpu-int4). About 13 min on 2 CPU cores; the full log is in .airflow/demo.log.
demo: airflow-db
	@echo "slm_finetune: validate -> finetune -> evaluate -> optimize -> report -> publish"
	@# The tasks' own log lines, without Airflow's bookkeeping; the whole log goes to demo.log.
	@$(AIRFLOW) dags test slm_finetune 2>&1 | tee $(AIRFLOW_HOME)/demo.log \
		| grep --line-buffered -E "\[DAG TEST\] (starting|end) task|slmops_airflow|Error" \
		| sed -u -E 's/^[0-9-]+T([0-9:]+)\.[0-9]+Z \[[a-z ]+\] (.*) \[airflow[^]]*\].*$$/\1  \2/' \
		|| true
	@echo
	@$(PY) -m slmops report --artifacts_root artifacts

# The UI on http://127.0.0.1:8080: what `airflow standalone` runs (api-server, scheduler,
# dag-processor, triggerer; SQLite, LocalExecutor), but nothing listens beyond 127.0.0.1
# (standalone's log servers would). Login: user admin; the password is generated on first
# start, printed once and kept in .airflow/passwords.json (mode 0600), unless
# SLMOPS_ADMIN_PASSWORD sets it. SLMOPS_BIND_ADDRESS=0.0.0.0 serves other machines, on
# purpose. Ctrl-C (or a SIGTERM to make) stops it and every process it started.
airflow: airflow-db
	@$(AIRFLOW_ENV) $(SUPERVISED) $(PY) -m slmops_airflow.cluster.standalone \
		--passwords $(AIRFLOW_HOME)/passwords.json

# The CeleryExecutor deployment of docker-compose.yaml as local processes (no Docker):
# PostgreSQL and Redis on 127.0.0.1 (installed from Debian's packages when missing), then
# api-server, scheduler, dag-processor, triggerer and two Celery workers (queues default
# and gpu), all in .cluster/ (logs in .cluster/logs), sharing artifacts/. Settings:
# cluster.env (shared with docker-compose.yaml). Returns once healthy; `make cluster-stop`
# stops it. CLUSTER_FOREGROUND=1 keeps it attached (Ctrl-C stops it).
CLUSTER := $(PY) -m slmops_airflow.cluster
CLUSTER_PORT ?= 8080
cluster: setup
	@$(CLUSTER) up --folder .cluster --artifacts_root artifacts --api_port $(CLUSTER_PORT) \
		$(if $(CLUSTER_FOREGROUND),--foreground)

cluster-stop:
	@if [ -x $(PY) ]; then $(CLUSTER) down --folder .cluster; fi

cluster-status:
	@$(CLUSTER) status --folder .cluster

# The MLflow UI over the embedded store that runs are tracked in (artifacts/mlflow). The UI
# needs the full mlflow package, which pins pyarrow < 26 (datasets 5 needs 26), so it lives
# in a venv of its own; the pipeline itself uses mlflow-skinny, the same version.
MLFLOW_VENV := .venv-mlflow
MLFLOW_VERSION := $(shell sed -n 's/^mlflow-skinny==//p' requirements.txt)
MLFLOW_PORT ?= 5000
MLFLOW_STORE := $(CURDIR)/artifacts/mlflow
mlflow:
	@test -x $(MLFLOW_VENV)/bin/mlflow || { \
		echo "installing the MLflow UI (mlflow==$(MLFLOW_VERSION)) into $(MLFLOW_VENV) (first run only)"; \
		$(PYTHON) -m venv $(MLFLOW_VENV) && $(MLFLOW_VENV)/bin/pip install --quiet \
			--disable-pip-version-check mlflow==$(MLFLOW_VERSION) 2>&1 | $(PIP_QUIET); }
	@mkdir -p $(MLFLOW_STORE)
	@echo "MLflow UI on http://127.0.0.1:$(MLFLOW_PORT) over $(MLFLOW_STORE); Ctrl-C stops it"
	@exec $(MLFLOW_VENV)/bin/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///$(MLFLOW_STORE)/mlflow.db \
		--default-artifact-root $(MLFLOW_STORE)/artifacts

# Test files run in parallel (pytest-xdist, TEST_WORKERS workers, each with its share of
# the cores; a file, and the whole cluster tier, stays on one worker: see tests/conftest.py);
# the 25 slowest tests are listed at the end. Two workers: a third on 2 cores measured the
# same in back-to-back runs (856 s and 850 s for the first session, benchmarks/RESULTS.md).
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --durations=25
# Two sessions, each timed by pytest: the library, DAG, integration and REST e2e tiers,
# then the tiers that start whole stacks (the Celery cluster, the browser against a real
# Airflow), which run beside each other. Both always run; either failing fails the target.
SERVICE_TIERS := tests/cluster tests/e2e/browser
test: setup $(DEV_STAMP)
	@status=0; \
	$(PY) -m pytest tests $(addprefix --ignore=,$(SERVICE_TIERS)) $(PYTEST_PARALLEL) || status=$$?; \
	$(PY) -m pytest $(SERVICE_TIERS) $(PYTEST_PARALLEL) || status=$$?; \
	exit $$status

test-unit: setup $(DEV_STAMP)
	@$(PY) -m pytest tests/unit $(PYTEST_PARALLEL)

test-integration: setup $(DEV_STAMP)
	@$(PY) -m pytest tests/integration $(PYTEST_PARALLEL)

# lint-imports: the import contracts in pyproject.toml ([tool.importlinter]): no airflow in the
# library, the package layers, no cycles inside a package. It reads slmops from the editable
# install; the graph takes well under a second to build, so no cache folder is kept.
lint: $(DEV_STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports --no-logo --no-cache

format: $(DEV_STAMP)
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

BENCHMARKS := benchmarks/bench_model_verify.py benchmarks/train_throughput.py \
	benchmarks/labeled_logits_step.py benchmarks/pipeline_overhead.py \
	benchmarks/inference.py benchmarks/distributed_throughput.py \
	benchmarks/orchestration_overhead.py benchmarks/dag_parse.py \
	benchmarks/multi_adapter_decode.py benchmarks/int4_export_time.py \
	benchmarks/decode_bound.py benchmarks/gguf_convert_time.py benchmarks/gc_scope.py

bench: setup
	@for script in $(BENCHMARKS); do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) .airflow .cluster .pytest_cache .ruff_cache build *.egg-info include/*.egg-info
