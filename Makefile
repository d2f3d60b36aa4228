# Quickstart: `make demo` labels the example data offline; `make test` runs every test.
# Both create .venv and install what is missing first, so they work on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned, so pip never resolves a multi-GB CUDA build by accident on CPU machines.
TORCH_SPEC ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
# Tests run in this many pytest-xdist workers, each test file on one worker, so a module fixture
# (an emitted package, a Ray cluster) is built once; PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile
# Each worker's torch (and the sandboxed labelers it starts, which inherit OMP_NUM_THREADS) gets
# its share of the cores: two workers each spinning two OpenMP threads on two cores ran the
# slowest files 28% slower (BENCHMARKS.md, "The test suite").
TEST_THREADS ?= $(shell c=$$(nproc); w=$(PYTEST_WORKERS); [ "$$w" -gt 0 ] 2>/dev/null && c=$$((c / w)); [ "$$c" -ge 1 ] && echo $$c || echo 1)

.PHONY: install demo test test-fast lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

# The main job on the embedded offline default: pretrained specialists, no Hub, no LLM.
demo: install
	@command -v bwrap >/dev/null || [ "$$(id -u)" -ne 0 ] || scripts/install-bubblewrap.sh
	$(VENV)/bin/autoannotator-agent "label tweets for toxicity" --data examples/tweets.csv --offline --verifier none
	$(VENV)/bin/autoannotator-agent "label these reviews by sentiment" --data examples/reviews.csv --offline --verifier none

# Installs bubblewrap and starts a private Docker engine first (as root), then runs everything,
# listing the slowest tests last (the suite's budget: 15 minutes on an idle 2-core machine).
test: install
	$(VENV)/bin/lint-imports
	OMP_NUM_THREADS=$(TEST_THREADS) scripts/with-test-services.sh $(PYTEST) --durations=25

test-fast: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(PYTEST) -m "not slow and not docker"

lint: install
	$(VENV)/bin/black --check agent sandbox templates tests benchmarks
	$(VENV)/bin/ruff check agent sandbox templates tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf .autoannotator .pytest_cache build *.egg-info
