# The README's two commands: `make demo` and `make test`. Each builds its own
# virtual environment on a fresh machine that has only Python >= 3.11, git and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/walkthrough.sh

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-work bench-work .pytest_cache
