# `make demo` and `make test` work on a fresh machine with Python >= 3.10:
# they create .venv and install imgbalance into it first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint install torch clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.torch
	$(BIN)/imgbalance demo

# mypy checks the torch and tracker code against the real packages, so lint needs them.
lint: $(VENV)/.torch $(VENV)/.trackers
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The torch extra (augment, embeddings, training). These pins are the tested pair on
# Linux x86_64, Python 3.11; the tests of those features need them.
$(VENV)/.torch: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet 'torch==2.14.1' 'torchvision==0.29.1'
	touch $@

torch: $(VENV)/.torch

# The optional trackers, the Ray backend, the statistics, ONNX, timm and ann extras, so that their
# tests run too.
$(VENV)/.trackers: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[mlflow,wandb,ray,stats,onnx,timm,ann]'
	touch $@

# pytest exits 5 when it collects no tests; make treats that as a failure.
test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) imgbalance-demo .pytest_cache .mypy_cache .ruff_cache
