# Two entry points: `make study` (the whole study) and `make test` (lint + tests). Both build .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 8
CONFIG ?=
SNAKEMAKE_ARGS ?=

.PHONY: env study study-offline test lint report clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

study: env
	$(BIN)/snakemake --cores $(CORES) $(if $(CONFIG),--configfile $(CONFIG)) $(SNAKEMAKE_ARGS)

study-offline: env
	$(BIN)/snakemake --cores 2 --configfile config/offline.yaml $(SNAKEMAKE_ARGS)

lint: env
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --configfile config/offline.yaml

test: lint
	$(BIN)/python -m pytest -q

report: env
	$(BIN)/snakemake --report results/report/snakemake_report.html $(if $(CONFIG),--configfile $(CONFIG))

clean:
	rm -rf results .snakemake
