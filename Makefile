# edgeloop: `make demo` runs the main job on a fresh machine; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export EDGELOOP_PIPELINES_DIR ?= $(CURDIR)/include/pipelines

.PHONY: install demo up up-distributed test lint bench lock clean chromium rclone

install: $(STAMP)

# The virtualenv: uv itself comes from PyPI into the venv, then the lock.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	# Development helpers (tools/edgeloop_dev) are importable in the venv, not packaged.
	echo "$(CURDIR)/tools" > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/edgeloop_dev.pth
	touch $@

# Regenerate the lock from the direct requirements.
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet requirements.in -o requirements.txt --python-version 3.11

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

up: $(STAMP)
	$(BIN)/python scripts/up.py

# docker-compose.yaml's topology as local processes (Celery, PostgreSQL, Redis, S3 blobs).
up-distributed: $(STAMP)
	$(BIN)/python scripts/up_distributed.py

# The browser tests drive Debian's chromium (never a downloaded browser).
chromium:
	command -v chromium || (apt-get update && apt-get install -y chromium)

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# bench/sync.py compares with Debian's rclone.
rclone:
	command -v rclone || (apt-get update && apt-get install -y rclone)

bench: $(STAMP) rclone
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/combiner.py
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/blocks.py
	$(BIN)/python bench/retrain.py
	$(BIN)/python bench/distributed.py

clean:
	rm -rf .airflow .airflow-distributed var
