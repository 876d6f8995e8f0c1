# fedcl: `make run` (set up + default experiment), `make test` (set up + whole test suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= /usr/share/datasets/fashion-mnist
export FLWR_HOME ?= $(CURDIR)/.flwr_home
export RAY_TMPDIR ?= $(CURDIR)/.raytmp
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO := 0

.PHONY: setup data run default smoke test test-fast lint mutants clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel first: an open torch range would pull a multi-GB CUDA build
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed data

data:
	@if ls $(DATA_DIR)/train-images-idx3-ubyte* >/dev/null 2>&1; then \
	  echo "Fashion-MNIST found in $(DATA_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST is missing. On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist"; \
	  echo "Elsewhere: put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,"; \
	  echo "t10k-labels-idx1-ubyte.gz in a folder and pass stream.data_dir=<folder> (make DATA_DIR=<folder>)."; \
	  exit 1; \
	fi

# the main job: FedAvg and FOT side by side on a small Permuted Fashion-MNIST stream (a few minutes)
run: setup
	rm -rf runs/demo
	$(PY) -m simulations.run -m experiment=demo_pmnist strategy=fedavg,fot hydra.sweep.dir=runs/demo $(ARGS)
	$(PY) -m simulations.report runs/demo

# the default experiment (Split Fashion-MNIST, 5 tasks, 10 clients, FedAvg + naive fine-tuning)
default: setup
	$(PY) -m simulations.run $(ARGS)

smoke: setup
	$(PY) -m simulations.run experiment=smoke $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check fedcl strategies simulations tests
	$(VENV)/bin/mypy fedcl strategies

# mutation testing (mutmut, [tool.mutmut] in pyproject.toml): not part of CI, about 1.5 h on two cores;
# MUTANTS="fedcl.subspace* strategies.fot*" limits it to some files; MUTANT_CHILDREN parallel workers.
# One OpenMP thread per worker: mutants run in processes forked from mutmut's fork server, where a
# multi-threaded torch op deadlocks and spins until the CPU limit, which mutmut then reports as a timeout
MUTANTS ?=
MUTANT_CHILDREN ?= 2
mutants: setup
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 $(VENV)/bin/mutmut run --max-children $(MUTANT_CHILDREN) $(MUTANTS)
	$(PY) -m simulations.benchmarks.mutation_table --survivors

clean:
	rm -rf runs outputs multirun .flwr_home .raytmp mutants
