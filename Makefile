# Setup and entry points. `make demo` and `make test` are the two commands in the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

# torch first, pinned: this machine has the CPU build of 2.13.0 on disk; an open range would
# pull a multi-GB CUDA build. tinysoundfont without deps: its pyaudio dependency is only for
# playback and needs PortAudio headers to build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps "tinysoundfont>=0.3.7"
	touch $@

demo: setup
	$(BIN)/mir demo

test: setup
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

test-all: setup
	$(BIN)/pytest -q -n 2 -m "slow or not slow" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/analysis.py
	$(BIN)/python benchmarks/recommend.py --scale 0.1
	$(BIN)/python benchmarks/similarity.py --sizes 100000

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
