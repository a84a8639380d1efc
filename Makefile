# The README's two commands: `make demo` and `make test`. Each builds its own
# virtual environment on a fresh machine that has only Python >= 3.11, git and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo test bench clean

# torch (extra [torch]) goes in first, pinned to the CPU wheel: a bare `torch` requirement
# could pull GBs of CUDA wheels. The torch adapter's tests then run in CI, never skipped.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q --disable-pip-version-check 'torch==2.13.0'
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,torch]'
	# an editable install skips data files: link the man page so `git quilt --help` finds it
	mkdir -p $(VENV)/share/man/man1 && ln -sf $(CURDIR)/man/git-quilt.1 $(VENV)/share/man/man1/git-quilt.1
	touch $(STAMP)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/walkthrough.sh

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-work bench-work .pytest_cache
