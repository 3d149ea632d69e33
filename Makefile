# cl-runner: `make help` lists every target.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
# Extra pip flags for the torch install, e.g. TORCH_PIP_FLAGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_FLAGS ?=
DATA_DIR ?= data/mnist
# A local copy of the four MNIST files; used instead of the internet when it exists.
MNIST_MIRROR ?= ../shared/data/mnist
ARGS ?=
export CL_RUNNER_DATA ?= $(abspath $(DATA_DIR))

CL_RUN = $(PYTHON) -m cl_runner.cli
EXPERIMENTS = naive replay10 replay1 scratch ewc ewc_replay

.PHONY: help install data test test-fast run notebook $(addprefix exp-,$(EXPERIMENTS)) bench sweep-replay sweep-ewc zoo wheel clean

help: ## List every target
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  make exp-NAME       one notebook experiment: $(EXPERIMENTS)"
	@echo "Variables: PYTHON=$(PYTHON) DATA_DIR=$(DATA_DIR) MNIST_MIRROR=$(MNIST_MIRROR) ARGS='extra cl-run overrides'"

install: ## Install cl-runner (editable) with test tools; keeps an installed torch, never pulls CUDA wheels for it
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "keeping installed torch $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PYTHON) -m pip install $(TORCH_PIP_FLAGS) "torch==$(TORCH_VERSION)"; \
	fi
	$(PYTHON) -m pip install -e ".[dev]"

data: ## Put MNIST in DATA_DIR (copied from MNIST_MIRROR if it exists, else downloaded) and verify it
	@mkdir -p $(DATA_DIR)
	@if [ -d "$(MNIST_MIRROR)" ]; then \
		for f in $(MNIST_MIRROR)/*-ubyte*; do [ -e "$(DATA_DIR)/$$(basename $$f)" ] || cp "$$f" $(DATA_DIR)/; done; \
	fi
	@$(PYTHON) -m cl_runner.mnist $(DATA_DIR)

test: data ## Run the whole test suite (unit tests and short runs on real MNIST)
	$(PYTHON) -m pytest

test-fast: data ## Only the tests that take under a few seconds
	$(PYTHON) -m pytest -m "not slow"

run: data ## The main job: the notebook's first experiment (naive, 50 epochs per task); ARGS=... adds overrides
	$(CL_RUN) $(ARGS)

$(addprefix exp-,$(EXPERIMENTS)): exp-%: data ## (see exp-NAME below)
	$(CL_RUN) experiment=$* $(ARGS)

notebook: data ## All six notebook experiments, then a comparison table (notebook.md)
	$(PYTHON) -m cl_runner.notebook $(EXPERIMENTS) -- $(ARGS)

bench: data ## Speed: notebook-style baseline vs cl-runner, printed and saved to bench/results-<device>.json
	$(PYTHON) bench/bench.py $(ARGS)

wheel: ## Build the wheel into dist/
	$(PYTHON) -m pip wheel --no-deps -w dist .

clean: ## Remove build files (keeps outputs/, multirun/ and data/)
	rm -rf build dist *.egg-info .pytest_cache
