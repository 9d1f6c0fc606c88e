# The two commands of the README. Both create the virtual environment on first use, so
# they work on a fresh machine with nothing installed by hand (Python 3.10-3.12 and make).
# `demo` needs only the core library; `test` adds the optional engines' packages (torch,
# torchvision, segment-anything, MONAI, slicer-core, PostgreSQL and Dask clients), since
# every engine is tested in CI.
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test clean-venv

demo: $(VENV)/.core-stamp
	$(VENV)/bin/spinelabel demo --out spinelabel-demo --overwrite

test: $(VENV)/.test-stamp
	bash scripts/ensure_postgres_binaries.sh
	$(VENV)/bin/python -m pytest

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core-stamp: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

$(VENV)/.test-stamp: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.core-stamp

clean-venv:
	rm -rf $(VENV)
