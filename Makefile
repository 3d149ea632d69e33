# cl-runner: `make help` lists every target.
# The two commands of a fresh checkout: `make run` (the main job) and `make test` (the whole
# suite). Each installs what it needs into the active Python where it is missing (activate a
# virtualenv first if you want one), so the second time they start at once.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
# Extra pip flags for the torch install. From PyPI on Linux, torch==TORCH_VERSION is the CUDA build
# (several GB: what a GPU wants); for the CPU build: TORCH_PIP_FLAGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_FLAGS ?=
# `make install`'s extras of pyproject.toml (the test tools with the trackers, and the docs site).
EXTRAS ?= dev,docs
# `make data` fills DATA_DIR with DATASET (python -m cl_runner.sources --list shows them all).
DATASET ?= mnist
DATA_DIR ?= data/$(DATASET)
# A local copy of the four MNIST files; used instead of the internet when it exists.
MNIST_MIRROR ?= ../shared/data/mnist
# Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist): the official files, re-gzipped; used instead of the internet when it exists.
FASHION_MNIST_MIRROR ?= /usr/share/datasets/fashion-mnist
# Where `make data` fetches from instead of the official URLs: a folder or a base URL.
MIRROR ?= $(if $(filter mnist,$(DATASET)),$(MNIST_MIRROR),$(if $(filter fashion_mnist,$(DATASET)),$(FASHION_MNIST_MIRROR)))
ARGS ?=
# cl-run's data.root default is $CL_RUNNER_DATA/<source>: the folder that holds one folder per data set.
export CL_RUNNER_DATA ?= $(abspath data)
# The real-cluster tests (tests/test_clusters.py) need Slurm and munge, which `make test` installs
# with apt-get where it can (root, Debian or Ubuntu). auto: where it cannot, the tests marked
# cluster are left out, and make test says so; yes: it must (the default under CI=true); no: leave
# them out without trying.
CLUSTER_TESTS ?= $(if $(filter true 1 yes,$(CI)),yes,auto)
# Extra pytest arguments for make test and make test-fast, e.g. PYTEST_ARGS="tests/test_docs.py -x".
PYTEST_ARGS ?=

CL_RUN = $(PYTHON) -m cl_runner.cli
EXPERIMENTS = naive replay10 replay1 scratch ewc ewc_replay
comma := ,
# $(call needs,EXTRAS): install torch and cl-runner (editable) with EXTRAS unless the active Python
# has them already (tools/installed.py: every requirement of pyproject.toml, checked in a moment).
needs = @$(PYTHON) tools/installed.py $(1) || $(MAKE) --no-print-directory install EXTRAS=$(1)

.PHONY: help install install-clusters data docs test test-fast run notebook $(addprefix exp-,$(EXPERIMENTS)) bench bench-load bench-gpu sweep-replay sweep-ewc zoo wheel clean

help: ## List every target
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  make exp-NAME         one notebook experiment: $(EXPERIMENTS)"
	@echo "Variables: PYTHON DATASET DATA_DIR MIRROR MNIST_MIRROR FASHION_MNIST_MIRROR TORCH_VERSION TORCH_PIP_FLAGS EXTRAS CLUSTER_TESTS ARGS (extra cl-run overrides); sweeps: LAUNCHER SEEDS REPLAY_SHARES EWC_ALPHAS SWEEP_REPLAY_DIR SWEEP_EWC_DIR; zoo: ZOO_SEEDS ZOO_DIR"

install: ## Install cl-runner (editable) with EXTRAS (dev,docs) into the active Python; torch==TORCH_VERSION first unless one is installed
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "keeping installed torch $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PYTHON) -m pip install $(TORCH_PIP_FLAGS) "torch==$(TORCH_VERSION)"; \
	fi
	$(PYTHON) -m pip install -e "$(if $(EXTRAS),.[$(EXTRAS)],.)"

install-clusters: ## For the real-cluster tests: Slurm + munge (apt-get, as root) and the Ray extra (pip); make test does this itself
	bash tests/cluster/install-slurm.sh
	$(PYTHON) -m pip install -e ".[dev,ray]"

data: ## Put DATASET (default mnist) in DATA_DIR, fetched from MIRROR (a folder or URL; for mnist and fashion_mnist a local copy) when it is one, else the internet, and verify it
	@$(PYTHON) -m cl_runner.sources $(DATASET) $(DATA_DIR) $(if $(or $(findstring ://,$(MIRROR)),$(wildcard $(MIRROR))),--mirror $(MIRROR))

docs: ## Rewrite the docs' generated parts (docs/gen_pages.py), then build the site into site/ (mkdocs build --strict)
	$(call needs,docs)
	$(PYTHON) docs/gen_pages.py
	$(PYTHON) -m mkdocs build --strict

# The whole suite, the docs' strict build and their command lines included (tests/test_docs.py).
# Slurm and munge as CLUSTER_TESTS says; Debian's Fashion-MNIST for its slow test where apt-get
# can install it (else that test skips, and fails under CI=true); pytest's own exit code is make test's.
test: ## Install what the suite needs where missing (dev, ray, docs extras; Slurm + munge and Debian's Fashion-MNIST as root), fetch MNIST, run every test
	$(call needs,dev$(comma)ray$(comma)docs)
	@$(MAKE) --no-print-directory data
	@bash tests/install-fashion-mnist.sh || echo "make test: without Debian's Fashion-MNIST (see above): its test skips (fails under CI=true)"
	@set --; \
	if [ "$(CLUSTER_TESTS)" = no ] || ! bash tests/cluster/install-slurm.sh; then \
		if [ "$(CLUSTER_TESTS)" = yes ]; then echo "make test: Slurm and munge are needed (CLUSTER_TESTS=yes)" >&2; exit 1; fi; \
		echo "make test: without Slurm and munge ($(if $(filter no,$(CLUSTER_TESTS)),CLUSTER_TESTS=no,they could not be installed here)): the tests marked cluster are left out (-m 'not cluster')"; \
		set -- -m "not cluster"; \
	fi; \
	echo "$(PYTHON) -m pytest $$* $(PYTEST_ARGS)"; $(PYTHON) -m pytest "$$@" $(PYTEST_ARGS)

test-fast: ## Skip the tests marked slow (end-to-end runs on real MNIST, packaging, real clusters)
	$(call needs,dev$(comma)docs)
	@$(MAKE) --no-print-directory data
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

run: ## The main job: the notebook's first experiment (naive, 50 epochs per task), installing what it needs first; ARGS=... adds overrides
	$(call needs,)
	@$(MAKE) --no-print-directory data
	$(CL_RUN) $(ARGS)

$(addprefix exp-,$(EXPERIMENTS)): exp-%: data ## (see exp-NAME below)
	$(CL_RUN) experiment=$* $(ARGS)

notebook: data ## All six notebook experiments, then a comparison table (notebook.md)
	$(PYTHON) -m cl_runner.notebook $(EXPERIMENTS) -- $(ARGS)

bench: data ## Speed: the training loop vs a notebook-style baseline, epochs idle vs beside a busy process, then whole runs vs plain PyTorch (bench/*.json)
	$(PYTHON) bench/bench.py $(ARGS)
	$(PYTHON) bench/load.py $(ARGS)
	$(PYTHON) bench/startup.py $(ARGS)

bench-load: data ## Only the busy-machine check: epochs idle vs beside one busy process, mlp/cnn/resnet, and a sweep (bench/load-cpu.json)
	$(PYTHON) bench/load.py $(ARGS)

bench-gpu: ## The GPU check in one go (~5 min on one GPU): notebook experiments, strategies' steps, precision, ResNet-18 (bench/results-gpu.json)
	$(PYTHON) bench/gpu.py $(ARGS)

# Sweeps: LAUNCHER=joblib runs the jobs in parallel here; LAUNCHER=slurm (or ray_cluster)
# runs the same sweep on a cluster (conf/hydra/launcher/). Each sweep writes into a fixed
# folder, so the report step knows where to look; an earlier sweep there is first moved
# aside to <folder>-<date>_<time>, so old and new runs never mix in one report.
LAUNCHER ?= joblib
SEEDS ?= 0,1,2
REPLAY_SHARES ?= 0.01,0.1,0.5
EWC_ALPHAS ?= 1e6,1e7,1e8,1e9
SWEEP_REPLAY_DIR ?= multirun/sweep-replay
SWEEP_EWC_DIR ?= multirun/sweep-ewc
MOVE_ASIDE = if [ -e "$(1)" ]; then mv "$(1)" "$(1)-$$(date +%Y-%m-%d_%H-%M-%S)"; fi

sweep-replay: data ## Replay-share sweep (REPLAY_SHARES x SEEDS, mlp64, in parallel), then cl-report of it
	@$(call MOVE_ASIDE,$(SWEEP_REPLAY_DIR))
	$(CL_RUN) -m hydra/launcher=$(LAUNCHER) strategy=replay model=mlp64 replay.share=$(REPLAY_SHARES) seed=$(SEEDS) \
		train.progress=false hydra.sweep.dir=$(SWEEP_REPLAY_DIR) $(ARGS)
	$(PYTHON) -m cl_runner.report $(SWEEP_REPLAY_DIR)

sweep-ewc: data ## EWC-strength sweep (EWC_ALPHAS x SEEDS, mlp256, in parallel), then cl-report of it
	@$(call MOVE_ASIDE,$(SWEEP_EWC_DIR))
	$(CL_RUN) -m hydra/launcher=$(LAUNCHER) strategy=ewc model=mlp256 ewc.alpha=$(EWC_ALPHAS) seed=$(SEEDS) \
		train.progress=false hydra.sweep.dir=$(SWEEP_EWC_DIR) $(ARGS)
	$(PYTHON) -m cl_runner.report $(SWEEP_EWC_DIR)

# The strategy zoo on the literature's split-MNIST protocol (conf/experiment/split_mnist_protocol.yaml),
# under class-IL and task-IL, one sweep each into $(ZOO_DIR)-class and $(ZOO_DIR)-task, then
# one cl-report per scenario. The preset holds the reference code's class-IL strengths; task-IL
# gets its own (ZOO_TASK_ARGS). ZOO_SEEDS=0 runs one seed (about 24 protocol runs instead of 72).
ZOO_STRATEGIES ?= naive,joint,cumulative,ewc,si,lwf,replay,agem,der,derpp,icarl,gdumb
ZOO_SEEDS ?= 0,1,2
ZOO_DIR ?= multirun/zoo
ZOO_TASK_ARGS ?= ewc.alpha=5e4 si.c=10

zoo: data ## Every strategy x ZOO_SEEDS on the split-MNIST protocol, class- and task-IL, then cl-report of each
	@$(call MOVE_ASIDE,$(ZOO_DIR)-class)
	@$(call MOVE_ASIDE,$(ZOO_DIR)-task)
	$(CL_RUN) -m hydra/launcher=$(LAUNCHER) experiment=split_mnist_protocol scenario=class \
		strategy=$(ZOO_STRATEGIES) seed=$(ZOO_SEEDS) train.progress=false hydra.sweep.dir=$(ZOO_DIR)-class $(ARGS)
	$(CL_RUN) -m hydra/launcher=$(LAUNCHER) experiment=split_mnist_protocol scenario=task $(ZOO_TASK_ARGS) \
		strategy=$(ZOO_STRATEGIES) seed=$(ZOO_SEEDS) train.progress=false hydra.sweep.dir=$(ZOO_DIR)-task $(ARGS)
	$(PYTHON) -m cl_runner.report $(ZOO_DIR)-class
	$(PYTHON) -m cl_runner.report $(ZOO_DIR)-task

wheel: ## Build the wheel into dist/
	$(PYTHON) -m pip wheel --no-deps -w dist .

clean: ## Remove build files (keeps outputs/, multirun/ and data/)
	rm -rf build dist *.egg-info .pytest_cache
