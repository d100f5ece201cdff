# The README's commands. Each target makes (or reuses) its own virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
FMNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install data demo test bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml CMakeLists.txt $(shell find cpp python -type f -not -name '*.pyc' 2>/dev/null)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q scikit-build-core pybind11 ninja cmake
	$(BIN)/pip install -q --no-build-isolation -Cbuild-dir=build/venv -e ".[train,test,bench]"
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST from the Debian package (no runtime downloads); skipped when already present.
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ] || ls $(FMNIST)/*train-images* >/dev/null 2>&1; then \
	  echo "Fashion-MNIST found in $(FMNIST)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or set SPQINDEX_DATA"; exit 1; \
	fi

demo: install data
	$(BIN)/spqindex demo

test: install data
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/compare_faiss.py

bench-smoke: install
	$(BIN)/python bench/compare_faiss.py --quick

clean:
	rm -rf build $(VENV) .pytest_cache .benchmarks
