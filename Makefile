# slmops: `make demo` and `make test` each work on a fresh clone (they run setup first).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.slmops-installed
BASE_MODEL := smollm2-135m-instruct
# pip notes every extra index folder it cannot read; they are noise here.
PIP_QUIET := sed -e '/is ignored: it is neither a file nor a directory/d'

.PHONY: help setup demo test test-unit test-integration lint format bench clean

help:
	@echo "make setup   venv + pinned requirements + package (editable) + bundled base model"
	@echo "make demo    the main job end to end on the bundled model"
	@echo "make test    every test tier (installs what it needs first)"
	@echo "make lint    ruff check + ruff format --check"
	@echo "make format  ruff format + ruff check --fix"
	@echo "make bench   benchmarks/ (prints measured ratios)"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else \
		"slmops needs Python 3.11; run: make clean && make setup PYTHON=/path/to/python3.11")'
	@echo "installing requirements into $(VENV) (first run only)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | $(PIP_QUIET)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | $(PIP_QUIET)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . 2>&1 | $(PIP_QUIET)
	@$(PY) -c "import slmops, torch, transformers, peft"
	@touch $(STAMP)

setup: $(STAMP)
	@$(PY) -m slmops models pull $(BASE_MODEL) --quiet

# Until the Airflow DAG lands, the demo runs the stages that exist from the CLI.
TONE_RUN := include/configs/finetune/phrase_tones.yaml

demo: setup
	@$(PY) -m slmops models list
	@$(PY) -m slmops generate -m $(BASE_MODEL) --max_new_tokens 32 \
		--prompt "What is the capital of France?"
	@$(PY) -m slmops validate --config $(TONE_RUN) --suite phrase_tones \
		--output_path artifacts/demo/validation
	@# ~10 min on 2 CPU cores; a second `make demo` finds the finished run and reuses it.
	@$(PY) -m slmops finetune --config $(TONE_RUN) --output_path artifacts/demo/finetune
	@# Base vs fine-tuned on the held-out rows, the gates, and the report (about 40 s).
	@$(PY) -m slmops evaluate --run_path artifacts/demo/finetune \
		--validation_path artifacts/demo/validation
	@echo "report: artifacts/demo/finetune/evaluation/report.html"
	@# ONNX int4 for the CPU, parity on the eval rows and speed vs PyTorch (about 80 s).
	@$(PY) -m slmops auto-opt --run_path artifacts/demo/finetune --target cpu-int4
	@echo "report: artifacts/demo/finetune/onnx/cpu-int4/report.html"

test: setup
	@$(PY) -m pytest tests

test-unit: setup
	@$(PY) -m pytest tests/unit

test-integration: setup
	@$(PY) -m pytest tests/integration

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: $(STAMP)
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

BENCHMARKS := benchmarks/bench_model_verify.py benchmarks/train_throughput.py \
	benchmarks/inference.py

bench: setup
	@for script in $(BENCHMARKS); do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info include/*.egg-info
