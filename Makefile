# Two commands that work on a fresh machine: `make demo` (main job on the embedded phantoms) and `make test`.
# Each creates its own virtual environment and installs everything it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output
PYTEST_ARGS ?= -n 2

.PHONY: demo test bench clean

# The pinned CPU build goes first, so the package's looser torch requirement never pulls a CUDA build.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,realdata]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/picard-ad demo --out $(DEMO_OUT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
