# The two commands of the README. Both create the virtual environment on first use, so
# they work on a fresh machine with nothing installed by hand (Python >= 3.10 and make).
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test clean-venv

demo: $(STAMP)
	$(VENV)/bin/spinelabel demo --out spinelabel-demo --overwrite

test: $(STAMP)
	$(VENV)/bin/python -m pytest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
