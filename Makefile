# The two entry points a newcomer needs: `make demo` and `make test`.
# Both create (or reuse) .venv and install seedlab into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seedlab-installed

.PHONY: demo test install clean-store

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the CPU build on a CPU machine
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,cluster,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python sweeps/bert_sizes.py --profile smoke
	$(BIN)/seedlab analyze --experiment bert_sizes-smoke
	@echo
	@echo "Browse the runs:  $(BIN)/seedlab ui    (MLflow UI on the store in ./mlruns)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

clean-store:
	rm -rf mlruns
